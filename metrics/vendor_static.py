"""Serve plotly.js from the installed plotly wheel as the static file ``vendor/plotly.min.js``.

The wheel ships ``plotly/package_data/plotly.min.js`` (4.6 MB); a staticfiles finder exposes
that one file, so ``{% static 'vendor/plotly.min.js' %}``, WhiteNoise (through the finders in
development and tests) and ``collectstatic`` (production) all find it without a copy in the
repository or a CDN. Listed in settings.STATICFILES_FINDERS.
"""

from __future__ import annotations

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import Error
from django.core.files.storage import FileSystemStorage

PREFIX = "vendor"
NAME = "plotly.min.js"
STATIC_PATH = f"{PREFIX}/{NAME}"
SOURCE = Path(plotly.__file__).resolve().parent / "package_data" / NAME


class _PrefixedStorage(FileSystemStorage):
    """A storage with the ``prefix`` collectstatic copies its files under: collectstatic reads
    ``getattr(storage, "prefix", None)`` and Django's own FileSystemFinder sets the attribute on
    its storages; FileSystemStorage does not declare it."""

    prefix: str


class PlotlyFinder(BaseFinder):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.storage = _PrefixedStorage(location=str(SOURCE.parent))
        self.storage.prefix = PREFIX  # collectstatic writes the file under vendor/

    def check(self, **kwargs) -> list:
        if not SOURCE.is_file():
            return [
                Error(
                    f"plotly.js is missing from the plotly package ({SOURCE}).", id="metrics.E001"
                )
            ]
        return []

    def find(self, path: str, find_all: bool = False, **kwargs):
        find_all = find_all or kwargs.get("all", False)
        if path == STATIC_PATH and SOURCE.is_file():
            return [str(SOURCE)] if find_all else str(SOURCE)
        return [] if find_all else None

    def list(self, ignore_patterns):
        if SOURCE.is_file():
            yield NAME, self.storage
