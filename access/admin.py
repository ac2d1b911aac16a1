"""Admin for tokens and origins: a new token's raw key is shown once, on creation."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from access.login import login_throttled
from access.models import AllowedOrigin, ApiToken
from access.services import normalize_origin, token_issue


class ApiTokenAddForm(forms.ModelForm):  # type: ignore[type-arg]  # django-stubs generic
    """The add form: everything but the key, which the server makes."""

    expires_days = forms.IntegerField(required=False, min_value=1)

    class Meta:
        model = ApiToken
        fields = ("name", "owner", "channels", "can_read_history", "is_staff_token")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # django-stubs generic
    """Tokens: listed by name and visible prefix; the hash is never shown."""

    list_display = (
        "name",
        "prefix",
        "owner",
        "is_staff_token",
        "can_read_history",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("is_staff_token", "can_read_history")
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    exclude = ("key_hash",)
    actions = ("revoke",)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        """The add form makes a new key; the change form edits the rest."""
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        """On creation, issue the key through the service and show it once."""
        if change:
            super().save_model(request, obj, form, change)
            return
        try:
            token, raw_key = token_issue(
                name=obj.name,
                owner=obj.owner,
                channels=list(obj.channels or []),
                staff=obj.is_staff_token,
                history=obj.can_read_history,
                expires_days=form.cleaned_data.get("expires_days"),
            )
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return
        obj.pk = token.pk
        self.message_user(
            request,
            f"Token {token.name!r} created. Its key is shown only now: {raw_key}",
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        """Refuse the selected tokens from now on."""
        from django.utils import timezone

        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} token(s) revoked.")


class AllowedOriginForm(forms.ModelForm):  # type: ignore[type-arg]  # django-stubs generic
    """Origins are stored normalized: scheme://host[:port], lower case."""

    class Meta:
        model = AllowedOrigin
        fields = ("origin", "enabled", "note")

    def clean_origin(self) -> str:
        """Normalize, or explain what an origin is."""
        return normalize_origin(self.cleaned_data["origin"])


@admin.register(AllowedOrigin)
class AllowedOriginAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # django-stubs generic
    """Browser origins allowed besides the server's own host."""

    form = AllowedOriginForm
    list_display = ("origin", "enabled", "note", "created_at")
    list_filter = ("enabled",)


# Admin's login form gets the same per-address failure limit as the dashboard's.
admin.site.login = login_throttled(admin.site.login)  # type: ignore[method-assign,assignment]  # same call, wrapped
