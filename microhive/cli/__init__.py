"""The ``microhive`` command."""
