"""The agent runtime: MicroAgent, its decorators, dispatch, schedules and hooks."""
