"""The one place where exceptions become HTTP responses (STYLE rule 8).

cascade raises typed errors (cascade.types.CascadeError subclasses carry their
status code); FastAPI raises HTTPException and RequestValidationError. All of
them leave as OpenAI's envelope `{"error": {message, type, param, code}}`.
Anything else is a 500 with a sanitized message (the traceback goes to the log).
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from cascade.types import BackendUnavailable, CascadeError, ModelNotFound

logger = logging.getLogger(__name__)

_NAMED = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          413: "request_too_large", 415: "unsupported_media_type", 422: "invalid_request_error",
          429: "rate_limit_error", 501: "unsupported", 503: "service_unavailable"}
_CODES = {401: "invalid_api_key", 413: "request_too_large", 415: "unsupported_file", 429: "rate_limit_exceeded",
          501: "unsupported_value", 503: "service_unavailable"}
"""OpenAI's `code` strings by status (null where OpenAI sends null, e.g. most 400s and unknown routes)."""


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    """OpenAI's machine-readable code (e.g. "model_not_found"), a string or null: never the HTTP status."""


class ErrorResponse(BaseModel):
    """OpenAI's error body; routes list it under `responses=` for their documented failures."""

    error: ErrorInfo


class Overloaded(BackendUnavailable):
    """The model's queue is full (429) or a waiter timed out (503); carries Retry-After seconds."""

    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float, status_code: int = 429):
        super().__init__(message)
        self.retry_after = retry_after
        self.status_code = status_code


class DeadlineExceeded(BackendUnavailable):
    """A model call ran past its request's total deadline: the caller degrades or gets 503."""


ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 415, 422, 429, 501, 503)
}


def error_response(status: int, message: str, *, type_: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None, code: str | None = None) -> JSONResponse:
    info = ErrorInfo(message=message, type=type_ or _TYPES.get(status, "error"), param=param,
                     code=code or _CODES.get(status))
    return JSONResponse(ErrorResponse(error=info).model_dump(), status_code=status, headers=headers)


async def _cascade_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CascadeError)
    headers = None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    elif exc.status_code == 503:
        headers = {"Retry-After": "5"}
    if exc.status_code >= 500:
        logger.warning("%s: %s", type(exc).__name__, exc.message)
    if exc.status_code == 499:  # the client is gone: nobody reads this answer
        logger.info("request cancelled: %s", exc.message)
    code = "model_not_found" if isinstance(exc, ModelNotFound) else None
    return error_response(exc.status_code, exc.message, type_=exc.error_type, param=exc.param, headers=headers,
                          code=code)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header", "form")]
    param = ".".join(loc) or None
    msg = str(first["msg"]).removeprefix("Value error, ")
    named = _NAMED.match(msg)
    if param is None and named:  # a model validator names the offending field ("field: why")
        return error_response(400, msg, param=named.group(1))
    return error_response(400, f"{param}: {msg}" if param else msg, param=param)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal server error", type_="internal_error")


def install_error_handlers(app: FastAPI) -> None:
    """Register every mapping; routes contain no try/except."""
    app.add_exception_handler(CascadeError, _cascade_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
