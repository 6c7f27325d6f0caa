"""The serving stack's exceptions, FastChat's integer error codes, and their one mapping to OpenAI JSON.

    ServeError                  status 500, type "server_error"   (base; never raised bare)
     ├── BadRequest             400  invalid_request_error    bad parameter, prompt over the context
     ├── Unauthorized           401  authentication_error     missing/wrong API key or shared secret
     ├── NotFound               404  not_found_error          unknown model or route
     ├── PayloadTooLarge        413  invalid_request_error    body over --max-request-bytes
     ├── RateLimited            429  rate_limit_error         admission control; carries retry_after
     ├── InternalError          500  server_error             a bug or a worker failure
     ├── BadGateway             502  server_error             a worker answered something unreadable
     └── ServiceUnavailable     503  service_unavailable      no worker for the model, worker unreachable

Handlers raise these; `to_openai_error(exc)` turns any exception into `(status, {"error": {...}})`
(pydantic validation errors become 400 naming the field, anything unexpected a 500 without details),
`error_headers(exc)` adds `Retry-After`, and `add_error_handlers(app)` installs both on a FastAPI app.
Worker streams carry FastChat's `ErrorCode` ints instead; `from_error_code` maps one back to an exception.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response


class ErrorCode(IntEnum):
    """FastChat's error codes (spec §7.3); 0 means success."""

    OK = 0
    VALIDATION_TYPE_ERROR = 40001
    INVALID_AUTH_KEY = 40101
    INCORRECT_AUTH_KEY = 40102
    NO_PERMISSION = 40103
    INVALID_MODEL = 40301
    PARAM_OUT_OF_RANGE = 40302
    CONTEXT_OVERFLOW = 40303
    RATE_LIMIT = 42901
    QUOTA_EXCEEDED = 42902
    ENGINE_OVERLOADED = 42903
    INTERNAL_ERROR = 50001
    CUDA_OUT_OF_MEMORY = 50002
    GRADIO_REQUEST_ERROR = 50003
    GRADIO_STREAM_UNKNOWN_ERROR = 50004
    CONTROLLER_NO_WORKER = 50005
    CONTROLLER_WORKER_TIMEOUT = 50006


class ServeError(Exception):
    """An error with an HTTP status and an OpenAI `type`/`code`; the message is shown to the client."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None
    error_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: str | int | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.param = param
        self.retry_after = retry_after


class BadRequest(ServeError):
    status = 400
    type = "invalid_request_error"
    error_code = ErrorCode.PARAM_OUT_OF_RANGE


class Unauthorized(ServeError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"
    error_code = ErrorCode.INVALID_AUTH_KEY


class NotFound(ServeError):
    status = 404
    type = "not_found_error"
    default_code = "model_not_found"
    error_code = ErrorCode.INVALID_MODEL


class PayloadTooLarge(ServeError):
    status = 413
    type = "invalid_request_error"
    default_code = "payload_too_large"
    error_code = ErrorCode.PARAM_OUT_OF_RANGE


class RateLimited(ServeError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    error_code = ErrorCode.ENGINE_OVERLOADED

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw: Any) -> None:
        super().__init__(message, retry_after=retry_after, **kw)


class InternalError(ServeError):
    status = 500
    type = "server_error"
    error_code = ErrorCode.INTERNAL_ERROR


class BadGateway(ServeError):
    """The upstream (a worker) answered, but not in the wire format: its fault, not ours."""

    status = 502
    type = "server_error"
    default_code = "bad_gateway"
    error_code = ErrorCode.INTERNAL_ERROR


class ServiceUnavailable(ServeError):
    status = 503
    type = "service_unavailable"
    default_code = "service_unavailable"
    error_code = ErrorCode.CONTROLLER_NO_WORKER


_BY_ERROR_CODE: dict[int, type[ServeError]] = {
    ErrorCode.VALIDATION_TYPE_ERROR: BadRequest,
    ErrorCode.PARAM_OUT_OF_RANGE: BadRequest,
    ErrorCode.CONTEXT_OVERFLOW: BadRequest,
    ErrorCode.INVALID_AUTH_KEY: Unauthorized,
    ErrorCode.INCORRECT_AUTH_KEY: Unauthorized,
    ErrorCode.NO_PERMISSION: Unauthorized,
    ErrorCode.INVALID_MODEL: NotFound,
    ErrorCode.RATE_LIMIT: RateLimited,
    ErrorCode.QUOTA_EXCEEDED: RateLimited,
    ErrorCode.ENGINE_OVERLOADED: RateLimited,
    ErrorCode.CONTROLLER_NO_WORKER: ServiceUnavailable,
    ErrorCode.CONTROLLER_WORKER_TIMEOUT: ServiceUnavailable,
}


def from_error_code(error_code: int, message: str) -> ServeError:
    """The exception for a worker chunk's non-zero `error_code` (unknown codes -> InternalError)."""
    cls = _BY_ERROR_CODE.get(int(error_code), InternalError)
    return cls(message, code=int(error_code))


def _validation_detail(errors: list[Any]) -> tuple[str, str | None]:
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value")
    return (f"{param}: {msg}" if param else msg), param


def to_openai_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """`(HTTP status, {"error": {"message", "type", "param", "code"}})` for any exception."""
    if isinstance(exc, ServeError):
        status, message, type_, param, code = exc.status, exc.message, exc.type, exc.param, exc.code
    elif isinstance(exc, ValidationError) or _is_request_validation_error(exc):
        message, param = _validation_detail(list(exc.errors()))  # type: ignore[attr-defined]
        status, type_, code = 400, "invalid_request_error", "invalid_value"
    else:
        # Never echo an unexpected exception's text: it may hold paths or internals.
        status, message, type_, param, code = 500, "internal server error", "server_error", None, None
    return status, {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_headers(exc: BaseException) -> dict[str, str]:
    """Headers an error response needs: `Retry-After` (whole seconds, at least 1) when known."""
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(exc, ServeError) and retry_after is not None:
        return {"Retry-After": str(max(1, math.ceil(retry_after)))}
    return {}


def _is_request_validation_error(exc: BaseException) -> bool:
    from fastapi.exceptions import RequestValidationError

    return isinstance(exc, RequestValidationError)


def add_error_handlers(app: FastAPI) -> None:
    """Answer ServeError, request validation errors and unexpected exceptions with OpenAI error JSON."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse

    async def handle(request: Request, exc: Exception) -> Response:
        status, body = to_openai_error(exc)
        return JSONResponse(body, status_code=status, headers=error_headers(exc))

    async def handle_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        cls = {401: Unauthorized, 404: NotFound, 413: PayloadTooLarge, 429: RateLimited}.get(exc.status_code)
        if cls is not None:
            return await handle(request, cls(str(exc.detail)))
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        body = {"error": {"message": str(exc.detail), "type": type_, "param": None, "code": None}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(ServeError, handle)
    app.add_exception_handler(RequestValidationError, handle)
    app.add_exception_handler(HTTPException, handle_http)
    app.add_exception_handler(Exception, handle)
