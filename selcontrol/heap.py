"""A web process's heap once it has started: everything loaded so far moved out of the garbage
collector's sight.

CPython's collector runs a full collection now and then (after enough allocations survive the
younger generations), and a full collection walks every tracked object in the process: for a
selcontrol web process, ~125,000 of them are Django, the apps, their modules and URL patterns,
alive until the process ends. A dashboard view that derives a 30-day page allocates enough to
set one off every few views, and each then cost ~50 ms of CPU inside that request (measured in
bench/dashboard_render.py: the "all cold" state's p95 was such a request, 129-151 ms against a
median of 80). ``gc.freeze()`` moves every object alive at that moment into a permanent
generation that collections skip, so they walk only what requests allocate.

Called by each gunicorn worker once its application is loaded (``post_worker_init`` in
selcontrol/gunicorn_conf.py), and by the benchmark for its in-process client, so that what is
measured is what runs."""

from __future__ import annotations

import gc

from django.urls import get_resolver


def freeze_after_start() -> int:
    """Import every module the URLconf names (Django would import the views on the first
    request), collect what start-up left as garbage, and freeze the rest; returns how many
    objects are frozen."""
    get_resolver().reverse_dict  # noqa: B018  (populating it imports every included URLconf and view)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
