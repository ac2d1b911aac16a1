"""The terminal dashboard (`manage.py dashboard_tui`): a client of `/ws` like any other."""
