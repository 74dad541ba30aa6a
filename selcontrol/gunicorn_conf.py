"""gunicorn's settings in production.

    gunicorn -c python:selcontrol.gunicorn_conf selcontrol.wsgi:application


The Dockerfile's CMD and docker-compose's web service start gunicorn with this file, and the live
tests (tests/faults/test_slow_clients.py, tests/faults/test_access_log_live.py) start it the same
way, so what is tested is what runs.

The production topology (docs/operations.md, "Slow clients and long polls"): nginx in front
(deploy/nginx.conf) reads every request's headers and body before it opens a connection to
gunicorn, so a client that sends a byte every few seconds costs nginx a few kilobytes, never a
gunicorn thread. Behind it, gthread workers: idle keep-alive connections wait in the worker's
selector without a thread; a request holds one thread while it runs. A long-poll
(``GET /api/v1/config?wait=N``) is a request that runs up to 25 s, so ``threads`` is sized for
the bots polling at once per process plus the operators and the bot's other calls.

Environment: ``SELCONTROL_BIND`` (0.0.0.0:8000), ``WEB_CONCURRENCY`` (worker processes, 3),
``SELCONTROL_WEB_THREADS`` (threads per worker, 32).
"""

from __future__ import annotations

import os

bind = os.environ.get("SELCONTROL_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
worker_class = "gthread"
threads = int(os.environ.get("SELCONTROL_WEB_THREADS", "32"))

# A request may run 60 s (a long-poll answers after 25 s at most); SIGTERM lets requests in
# flight finish for up to 30 s.
timeout = 60
graceful_timeout = 30
# nginx keeps idle connections to gunicorn open for 30 s (upstream keepalive_timeout); gunicorn
# must not close them first, or nginx could send a POST on a connection being closed (a 502).
keepalive = 75

# No gunicorn access log: selcontrol's own access line (logger selcontrol.request) has the
# request id, route, user or token name, and never the query string. Whoever turns gunicorn's
# on (--access-logfile -) still gets no query string (%(U)s is the path alone; %(r)s, %(q)s and
# the Referer %(f)s, which can carry one, are left out).
accesslog = None
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
errorlog = "-"


def post_worker_init(worker) -> None:
    """Once the worker has loaded the application: freeze the start-up heap out of the garbage
    collector's full collections (selcontrol/heap.py)."""
    from selcontrol.heap import freeze_after_start

    frozen = freeze_after_start()
    worker.log.info("heap frozen after start-up: %d objects", frozen)
