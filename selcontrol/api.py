"""The bot-facing HTTP API under /api/v1/ (django-ninja): one NinjaAPI, routers per app.

Every error body is ``{"error": "<a sentence a person can act on>"}``; validation errors name the
field. The OpenAPI document is served at /api/v1/openapi.json and interactive docs at /api/v1/docs.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import (
    AuthenticationError,
    ConfigError,  # noqa: F401  (re-exported for routers' typing)
    HttpError,
    ValidationError,
)
from ninja.parser import Parser

from metrics.api import COMPONENT_SCHEMAS as metrics_schemas
from metrics.api import router as metrics_router
from rollout.api import router as rollout_router
from rollout.auth import ApiError
from rollout.services import Conflict, ServiceError

from .input_guard import find_unstorable_text

logger = logging.getLogger("selcontrol.api")


class TextParser(Parser):
    """JSON bodies whose strings can all be stored: a NUL or a lone surrogate anywhere (valid
    JSON, but PostgreSQL's text takes neither) is refused with 400 naming the field, before any
    schema or service sees it."""

    def parse_body(self, request: HttpRequest):
        data = json.loads(request.body)
        problem = find_unstorable_text(data)
        if problem:
            raise ApiError(400, problem)
        return data


class Api(NinjaAPI):
    """A NinjaAPI whose document also holds ``component_schemas``: the schemas that operations
    refer to from their ``openapi_extra`` (the events body is described by pydantic models that
    do not validate it, metrics/ingest/schemas.py, so ninja does not collect them itself)."""

    def __init__(self, *args, component_schemas: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.component_schemas = component_schemas

    def get_openapi_schema(self, **kwargs):
        document = super().get_openapi_schema(**kwargs)
        schemas = document["components"]["schemas"]
        clash = set(schemas) & set(self.component_schemas)
        if clash:
            raise ConfigError(f"OpenAPI component names used twice: {sorted(clash)}")
        schemas.update(self.component_schemas)
        return document


api = Api(
    title="selcontrol API",
    version="1",
    description=(
        "The contract between the Sel bot and selcontrol: assignment, config sync, events, "
        "summaries and the rollout's operations. Authenticate with `Authorization: Bearer <token>`."
    ),
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
    parser=TextParser(),
    component_schemas=metrics_schemas,
)
api.add_router("/", rollout_router)
api.add_router("/", metrics_router)
api.add_router("/", "rollout.fleet_api.router")  # bot instance reports (docs/fleet.md)


def error_response(request: HttpRequest, status: int, message: str, **extra) -> HttpResponse:
    response = api.create_response(request, {"error": message, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="selcontrol"'
    return response


def _describe(error: dict) -> str:
    loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "payload")]
    field = ".".join(loc)
    msg = error.get("msg", "is invalid")
    if error.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    if error.get("type") == "missing":
        return f"{field} is required." if field else "The request body is missing."
    if error.get("type") == "value_error":
        sentence = msg.removeprefix("Value error, ")
        if field and sentence.startswith(loc[-1]):  # the validator's sentence names the field
            return sentence
        msg = sentence.rstrip(".")
    return f"{field}: {msg}." if field else f"{msg}."


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors
    ]
    message = _describe(errors[0]) if errors else "The request is invalid."
    if len(errors) > 1:
        message += f" ({len(errors) - 1} more problem(s) in 'details'.)"
    return error_response(request, 400, message, details=errors)


@api.exception_handler(AuthenticationError)
def on_authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(
        request, 401, "Send a valid API token as 'Authorization: Bearer <token>'."
    )


@api.exception_handler(ApiError)
def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_response(request, exc.status_code, exc.message)


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, ApiError):  # the parser's own sentence (see TextParser)
        return error_response(request, exc.__cause__.status_code, exc.__cause__.message)
    message = str(exc.message)
    if exc.status_code == 400 and message.startswith("Cannot parse request body"):
        message = "The request body is not valid JSON; send a JSON object."
    return error_response(request, exc.status_code, message)


@api.exception_handler(Conflict)
def on_conflict(request: HttpRequest, exc: Conflict) -> HttpResponse:
    from rollout.api import rollout_state

    return error_response(request, 409, str(exc), current=rollout_state(exc.rollout))


@api.exception_handler(ServiceError)
def on_service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return error_response(request, exc.status, str(exc))


@api.exception_handler(RequestDataTooBig)
def on_body_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit_mib = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / (1024 * 1024)
    return error_response(
        request, 413, f"The request body is larger than {limit_mib:g} MiB; send less."
    )


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    from django.http import Http404

    if isinstance(exc, Http404):
        return error_response(request, 404, "There is no such resource.")
    logger.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(
        request, 500, "selcontrol failed to handle this request; it has been logged."
    )
