"""The Celery tasks a worker registers keep their names when modules move (issue 17): queued
messages and the beat schedule name tasks by string, so a task whose name changed, or whose
module a worker no longer imports, would be refused as unregistered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
WORKER_VIEW = """
import json, django
django.setup()
from selcontrol.celery import app
app.loader.import_default_modules()  # what a starting worker does: autodiscovery included
print(json.dumps(sorted(name for name in app.tasks if not name.startswith("celery."))))
"""


def registered_in_a_fresh_worker() -> set[str]:
    # a production-like process: no DEBUG from the caller's shell, so a SECRET_KEY of its own
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "selcontrol.settings",
        "DEBUG": "false",
        "SECRET_KEY": "celery-task-tests-" + "k" * 40,
    }
    out = subprocess.run(
        [sys.executable, "-c", WORKER_VIEW],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_worker__registers_every_task_under_its_old_name():
    assert registered_in_a_fresh_worker() == {
        "metrics.tasks.draw_weekly_review_sample",
        "metrics.tasks.evaluate_guardrails",
        "metrics.tasks.send_alert",
        "metrics.tasks.update_rollups",
        "selcontrol.heartbeat",
    }


def test_beat_schedule__names_only_tasks_a_worker_registers():
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled <= registered_in_a_fresh_worker()
