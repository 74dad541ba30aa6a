"""The web worker freezes its start-up heap (selcontrol/heap.py, gunicorn's post_worker_init):
run in a fresh interpreter, as a gunicorn worker is, so that this test process's own heap is
left as it is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import gc, json, sys
import django
django.setup()
import selcontrol.gunicorn_conf as conf

class Log:
    lines = []
    def info(self, message, *args):
        self.lines.append(message % args)

class Worker:
    log = Log()

before = gc.get_freeze_count()
views_before = "metrics.dashboard.views" in sys.modules
conf.post_worker_init(Worker())
print(json.dumps({
    "before": before,
    "after": gc.get_freeze_count(),
    "views_before": views_before,
    "views_after": "metrics.dashboard.views" in sys.modules,
    "log": Worker.log.lines,
}))
"""


def test_post_worker_init__loads_every_view_then_freezes_the_heap():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "selcontrol.settings", "DEBUG": "true"}
    out = subprocess.run(
        [sys.executable, "-c", WORKER], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["before"] == 0
    assert not report["views_before"]  # Django imports views on the first request...
    assert report["views_after"]  # ...the worker has them before it (and frozen with the rest)
    assert report["after"] > 50_000  # the loaded app: ~116,000-129,000 objects here
    [line] = report["log"]
    assert re.fullmatch(r"heap frozen after start-up: \d+ objects", line)
