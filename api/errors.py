"""One error shape for every failure: {"error": {"type", "code", "message", "param"}}.

Domain errors map to 4xx with their message; anything unexpected is a 500 with an error id only
(the trace goes to the log), so no stack trace, SQL or parameter ever reaches a client.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_core import platform

log = logging.getLogger("crm.api")


class ErrorDetail(BaseModel):
    type: str
    code: str
    message: str
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """An HTTP failure raised by the API layer itself (auth, preconditions, limits)."""

    def __init__(self, status: int, type_: str, code: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.code, self.message, self.param = status, type_, code, message, param
        self.headers = headers or {}


# domain error class -> (status, type, code); the most specific class first
DOMAIN_STATUS: tuple[tuple[type[platform.DomainError], int, str, str], ...] = (
    (platform.AuthenticationError, 401, "authentication_error", "unauthenticated"),
    (platform.PermissionDenied, 403, "permission_error", "forbidden"),
    (platform.NotFound, 404, "invalid_request_error", "not_found"),
    (platform.ConflictError, 409, "conflict_error", "conflict"),
    (platform.ValidationError, 400, "invalid_request_error", "invalid"),
    (platform.ServiceUnavailable, 503, "api_error", "unavailable"),
    (platform.DomainError, 400, "invalid_request_error", "refused"),
)
HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 412: "precondition_failed",
              413: "too_large", 415: "unsupported_media_type", 422: "unprocessable", 428: "precondition_required",
              429: "rate_limited"}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in ((400, "Refused input"), (401, "Missing or bad token"), (403, "Not allowed"),
                                (404, "Not found"), (409, "Conflict"), (412, "Stale If-Match"),
                                (422, "Malformed request"), (428, "If-Match missing"), (429, "Rate limited"))
}


def error_response(status: int, type_: str, code: str, message: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"type": type_, "code": code, "message": message, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


def domain_status(exc: platform.DomainError) -> tuple[int, str, str]:
    for cls, status, type_, code in DOMAIN_STATUS:
        if isinstance(exc, cls):
            return status, type_, code
    return 400, "invalid_request_error", "refused"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.type, exc.code, exc.message, exc.param, exc.headers)

    @app.exception_handler(platform.DomainError)
    async def domain_error(_request: Request, exc: platform.DomainError) -> JSONResponse:
        status, type_, code = domain_status(exc)
        return error_response(status, type_, code, str(exc), getattr(exc, "param", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
        message = first.get("msg", "The request is malformed.")
        param = ".".join(location) or None
        return error_response(422, "invalid_request_error", "unprocessable",
                              f"{param}: {message}" if param else str(message), param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        message = exc.detail if isinstance(exc.detail, str) else "The request was refused."
        return error_response(status, "invalid_request_error", HTTP_CODES.get(status, "error"), message,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        log.exception("API error %s", error_id, exc_info=exc)
        return error_response(500, "api_error", "internal",
                              f"Something went wrong on our side (error id {error_id}); nothing was saved.")
