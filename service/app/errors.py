"""The errors a caller can act on, for every adapter: one enum of machine codes and one exception.

Use cases raise :class:`AppError` (a code, a Chinese message, the field it concerns); each adapter
turns it into its own form — the JSON API into ``{code, message, field}`` with the HTTP status of the
code (``service.http.errors.STATUS``), the console into a page. No HTTP here.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every ``code`` an API error body may carry."""

    # the request itself
    BAD_REQUEST = "bad_request"
    INVALID_REQUEST = "invalid_request"
    INVALID_VALUE = "invalid_value"
    INVALID_QUERY = "invalid_query"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    HTTP_ERROR = "http_error"
    # who is asking
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    # enterprises and profiles
    INVALID_PROFILE = "invalid_profile"
    INVALID_USCC = "invalid_uscc"
    USCC_MISMATCH = "uscc_mismatch"
    # catalog entries
    INVALID_POLICY = "invalid_policy"
    INVALID_RULE = "invalid_rule"
    ID_MISMATCH = "id_mismatch"
    EXISTS = "exists"
    ALREADY_PUBLISHED = "already_published"
    NOT_A_POLICY = "not_a_policy"
    # anything
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    DATABASE_UNAVAILABLE = "database_unavailable"
    INTERNAL_ERROR = "internal_error"


class AppError(Exception):
    """An error the caller can act on: its code, a Chinese message, the field (dotted path) if any, and
    for ``rate_limited`` how many seconds to wait."""

    def __init__(self, code: ErrorCode, message: str, field: str | None = None, *,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field, self.retry_after = code, message, field, retry_after


def not_found(message: str, field: str | None = None) -> AppError:
    return AppError(ErrorCode.NOT_FOUND, message, field)
