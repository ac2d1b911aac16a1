from django.apps import AppConfig


class AccessConfig(AppConfig):
    """API tokens and allowed origins, managed in Django admin and from the command line."""

    name = "access"
    default_auto_field = "django.db.models.BigAutoField"
