"""Proxy errors and their single mapping to OpenAI's error shape.

Every error response looks like ``{"error": {"message", "type", "param", "code"}}``, the shape
OpenAI SDKs parse. Messages name fields and reasons, never keys, prompts or concept contents.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from guards.errors import ConceptFileError, GuardError, NescioError, RequestRejected

log = logging.getLogger(__name__)


class ProxyError(NescioError):
    """An error with an HTTP status and an OpenAI error type."""

    status = 500
    type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(ProxyError):
    status, type = 400, "invalid_request_error"


class Unauthorized(ProxyError):
    status, type = 401, "authentication_error"


class Forbidden(ProxyError):
    status, type = 403, "permission_error"


class NotFound(ProxyError):
    status, type = 404, "not_found_error"


class Conflict(ProxyError):
    status, type = 409, "conflict_error"


class PayloadTooLarge(ProxyError):
    status, type = 413, "invalid_request_error"


class UpstreamUnavailable(ProxyError):
    status, type = 502, "upstream_error"


class UpstreamTimeout(ProxyError):
    status, type = 504, "upstream_timeout"


class GuardUnavailable(ProxyError):
    status, type = 503, "guard_unavailable"


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | int | None = None
) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(exc: ProxyError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.message, exc.type, param=exc.param, code=exc.code), status_code=exc.status
    )


def exception_response(exc: Exception) -> JSONResponse:
    """The OpenAI-shaped answer to an exception a request raised: the one mapping, used by the
    FastAPI app's handlers and by the lean inference routes (:mod:`proxy.inference`)."""
    if isinstance(exc, ProxyError):
        return error_response(exc)
    if isinstance(exc, ConceptFileError):
        return error_response(InvalidRequest(str(exc), param=exc.field, code="invalid_concepts"))
    if isinstance(exc, RequestRejected):
        return error_response(InvalidRequest(exc.message, param=exc.param, code=exc.code))
    if isinstance(exc, GuardError):
        log.error("guard failure: %s", type(exc).__name__)
        return error_response(GuardUnavailable("the guard is unavailable"))
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return error_response(ProxyError("internal error"))


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to OpenAI's error shape, in one place (:func:`exception_response`)."""

    async def on_error(_: Request, exc: Exception) -> JSONResponse:
        return exception_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"] if p != "body") or None
        return error_response(InvalidRequest(str(first["msg"]), param=param))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, StarletteHTTPException):
            raise exc
        kinds = {404: "not_found_error", 405: "invalid_request_error"}
        message = "unknown route" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(
            error_body(message, kinds.get(exc.status_code, "invalid_request_error")),
            status_code=exc.status_code,
        )

    for kind in (ProxyError, ConceptFileError, RequestRejected, GuardError, Exception):
        app.add_exception_handler(kind, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
