"""Shared fixtures: every test gets its own event loop, so memory hives never leak."""
