"""Hostile input turned away at the edge with a sentence, before any view or query sees it.

- ``InputGuardMiddleware``: a NUL character in the path or the query string (PostgreSQL's text
  cannot hold one, so a lookup with it failed with a 500 deep in a view) gets 400; the API's
  404 and 405 answers are ``{"error": ...}`` like all its other errors.
- ``ChunkedBodyMiddleware`` (WSGI): a body sent with ``Transfer-Encoding: chunked`` and no
  Content-Length is read (up to a limit) and given its length, so Django does not take it as
  empty.
- ``find_unstorable_text``: where a parsed JSON document holds a NUL or a lone surrogate,
  which the API's JSON parser (selcontrol.api) refuses by field.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

NUL_IN_ADDRESS = (
    "The address holds a NUL character (%00), which no selcontrol name or value contains; "
    "remove it."
)


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(settings.SELCONTROL_API_PREFIX)


def json_error(status: int, message: str) -> HttpResponse:
    return HttpResponse(
        json.dumps({"error": message}), status=status, content_type="application/json"
    )


class InputGuardMiddleware:
    """NUL in the address: 400 with a sentence. The API's 404/405: JSON with a sentence."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            "\x00" in request.path_info
            or "\x00" in request.META.get("QUERY_STRING", "")
            or any(
                "\x00" in key or any("\x00" in v for v in values)
                for key, values in request.GET.lists()
            )
        ):
            if _is_api(request):
                return json_error(400, NUL_IN_ADDRESS)
            return HttpResponse(
                NUL_IN_ADDRESS, status=400, content_type="text/plain; charset=utf-8"
            )
        response = self.get_response(request)
        if _is_api(request) and response.status_code in (404, 405):
            if not response.get("Content-Type", "").startswith("application/json"):
                return self._api_error(request, response)
        return response

    @staticmethod
    def _api_error(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if response.status_code == 404:
            answer = json_error(
                404,
                f"There is no API operation at {request.path_info[:200]}; "
                "the operations are listed at /api/v1/docs.",
            )
        else:
            allowed = response.get("Allow", "")
            answer = json_error(
                405,
                f"{request.method} is not allowed here" + (f"; use {allowed}." if allowed else "."),
            )
            if allowed:
                answer["Allow"] = allowed
        return answer


class ChunkedBodyMiddleware:
    """WSGI middleware: give a chunked request body its Content-Length.

    Django reads ``CONTENT_LENGTH`` bytes of a body, and a chunked request has none, so it saw an
    empty body. The server (gunicorn sets ``wsgi.input_terminated``) decodes the chunks; here at
    most ``limit + 1`` bytes are read into memory and the length set. A longer body keeps a
    length past the limit and a truncated stream: the views refuse it by its length (413)
    without reading it.
    """

    def __init__(self, app: Callable, limit: int | None = None):
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if (
            "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
            and not environ.get("CONTENT_LENGTH")
            and environ.get("wsgi.input_terminated")
        ):
            limit = self.limit or _body_limit()
            body = environ["wsgi.input"].read(limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def _body_limit() -> int:
    from metrics.api import MAX_BODY_BYTES

    return max(MAX_BODY_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0)


def find_unstorable_text(document: Any) -> str | None:
    """A sentence naming the first place in a parsed JSON document holding a NUL character or a
    lone surrogate (neither can be stored as text), or None. Iterative: depth is no risk."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                return f"{where or 'The body'} {problem}"
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(key)
                if problem:
                    return f"A key in {where or 'the body'} {problem}"
                stack.append((f"{where}.{key}" if where else key, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "holds a NUL character (\\u0000); remove it."
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return (
                "holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not text; "
                "send valid UTF-8."
            )
    return None
