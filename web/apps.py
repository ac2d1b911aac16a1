from django.apps import AppConfig


class WebConfig(AppConfig):
    """The live web dashboard: the page, login and logout."""

    name = "web"
