"""The quick start (``make run``) stores events on SQLite through the portable twin of the intake
path (metrics/ingest/intake.py ``_store_portable``, and rollups' portable branches), not the
PostgreSQL statements the rest of the suite runs. So the intake and event tests run again here,
on SQLite, in a pytest of their own (issue 17, item 7)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MODULES = ["tests/metrics/ingest/test_intake.py", "tests/metrics/ingest/test_events.py"]
POSTGRES_ONLY = "not one_statement_sql"
"""test_aggregate__one_statement_sql__same_as_the_orm_path compares rollups' single PostgreSQL
statement with the ORM path: there is no such statement on SQLite."""


def test_intake_and_event_tests__on_sqlite_as_the_quick_start__all_pass(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CELERY_BROKER_URL"}}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'quickstart.sqlite3'}",
        CELERY_TASK_ALWAYS_EAGER="true",
        DEBUG="true",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *MODULES,
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            POSTGRES_ONLY,
            "-W",
            "ignore::DeprecationWarning",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    assert done.returncode == 0, done.stdout[-4000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 80, summary
    assert "failed" not in summary and "error" not in summary and "skipped" not in summary
