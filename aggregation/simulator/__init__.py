"""The demo trading desk of `manage.py simulate`: Redis publisher and backend service servers."""
