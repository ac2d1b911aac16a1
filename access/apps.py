from django.apps import AppConfig


class AccessConfig(AppConfig):
    """API tokens and allowed origins, managed in Django admin and from the command line."""

    name = "access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Called once Django is set up: hook CORS decisions to the allowed origins."""
        from corsheaders.signals import check_request_enabled

        from access.signals import cors_allow_listed_origin

        check_request_enabled.connect(cors_allow_listed_origin, dispatch_uid="access-cors")
