"""The request type of views that read ``request.htmx``.

django-htmx's ``HtmxMiddleware`` (settings.MIDDLEWARE) sets ``request.htmx`` on every request;
``HttpRequest`` does not declare it. django-htmx documents this subclass for type-checked projects
(its middleware docs, after the django-stubs pattern for custom ``HttpRequest`` classes): views
annotate their request with it. For annotations only: Django still passes its own request.
"""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
