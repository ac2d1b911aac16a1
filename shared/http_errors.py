"""The error body of every HTTP endpoint: `{"error": code, "message": text}` (+ fields of a code).

One vocabulary for REST (`/api/...`, `/debug`) and the process endpoints (`/health`,
`/health/ready`, `/metrics`): DRF's codes where DRF has one, so that a client parsing DRF's
errors parses ours; the project's own only where DRF has none. Pure: the views wrap the body in
their framework's response (`dashboard_project/api_errors.py` for DRF and Django views).

`/health/ready`'s 503 is not an error body: it is the readiness report (`status`, `checks`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ErrorCode(StrEnum):
    """The `error` of an HTTP error body."""

    # DRF's (rest_framework.exceptions, each one's `default_code`)
    NOT_AUTHENTICATED = "not_authenticated"  # 401: no credentials
    AUTHENTICATION_FAILED = "authentication_failed"  # 401: a bad, expired or revoked token
    PERMISSION_DENIED = "permission_denied"  # 403: not staff, outside the token's scope, CSRF
    THROTTLED = "throttled"  # 429
    NOT_FOUND = "not_found"  # 404
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    PARSE_ERROR = "parse_error"  # 400: a body that does not parse
    NOT_ACCEPTABLE = "not_acceptable"  # 406
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    INVALID = "invalid"  # 400: DRF's ValidationError (its codes are per field: this one)
    ERROR = "error"  # 500: DRF's APIException of no other kind
    # the project's
    INVALID_PARAMETER = "invalid_parameter"  # 400 with `parameter`: a history query parameter
    INVALID_NOTICE = "invalid_notice"  # 400: a notice body that parses but is refused
    UNAVAILABLE = "unavailable"  # 503: the history database does not answer


ERROR_CODES: Final = frozenset(code.value for code in ErrorCode)


def error_body(code: ErrorCode, message: str, **fields: str) -> dict[str, str]:
    """The body of an HTTP error; `fields` are a code's own (`parameter` of invalid_parameter)."""
    return {"error": code.value, "message": message, **fields}
