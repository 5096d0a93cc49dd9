"""Tasks: queue messages whose result is kept, workflows of them, and where results live."""
