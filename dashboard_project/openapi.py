"""What the OpenAPI schema (`/api/schema`) says beyond each view's own `extend_schema`.

- Bearer tokens as a security scheme beside the session cookie (either one authenticates).
- The errors every operation can answer, from authentication, permissions and the per-address
  lockout (`api_errors` gives them one body): 401, 403 and 429 with `{"error", "message"}`.

Imported by the URLconf, so that drf-spectacular finds the extension before it builds a schema.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

ERROR_BODY = "ApiError"
_ERRORS = {
    "401": "No valid credentials: a missing, invalid, expired or revoked token "
    "(with `WWW-Authenticate: Bearer`), or no session.",
    "403": "Authenticated, but not allowed: a staff endpoint, a scope the token lacks, or a "
    "session without a CSRF token on an unsafe method.",
    "429": "Too many failed authentications from this address; wait and retry.",
}
_BODY_IF_DECLARED = ("400", "404", "415", "503")  # declared by the operations answering them


class BearerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """`Authorization: Bearer dsk_...` (access.authentication.BearerTokenAuthentication)."""

    target_class = "access.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        """Called by drf-spectacular for each operation using the authenticator."""
        return {"type": "http", "scheme": "bearer", "description": "An API token (`dsk_...`)."}


def add_error_responses(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """Postprocessing hook: the error body, and 401/403/429 on every authenticated operation.

    A response an operation declares with a body of its own is kept; one it declares without a
    body (a 403, a 503) gets the error body.
    """
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_BODY] = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        "required": ["error", "message"],
    }
    body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_BODY}"}}}
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            if not operation.get("security"):
                continue
            responses = operation.setdefault("responses", {})
            for code, description in _ERRORS.items():
                responses.setdefault(code, {"description": description})
            for code in (*_ERRORS, *_BODY_IF_DECLARED):
                if code in responses and "content" not in responses[code]:
                    responses[code]["content"] = body
    return result
