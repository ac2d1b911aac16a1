"""The Django project: settings, URLs, ASGI application and process-level endpoints."""

# The product's version (pyproject.toml's), logged by each web process when it starts.
__version__ = "0.1.0"
