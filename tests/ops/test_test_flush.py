"""The flush that ends every transactional test (live servers, workers, browsers) survives a
server still answering its last request (tests/conftest.py, ``_install_patient_flush``).

The CI run of stop 20 failed this way: a live client test ended while the gunicorn process was
still serving the config its client fetched after a rollback; the flush's TRUNCATE and that
multi-table read deadlocked, PostgreSQL failed the TRUNCATE, and the next test found the last
one's rows ("A token named 'sel-bot' exists already"). Here the same deadlock is made on purpose:
another session reads the last table the TRUNCATE locks, then the first."""

from __future__ import annotations

import re
import threading
import time

import psycopg
import pytest
from django.core.management.base import CommandError
from django.core.management.color import no_style
from django.core.management.sql import sql_flush
from django.db import connection
from django.test import TransactionTestCase

from rollout import services
from rollout.models import ApiToken, Rollout
from tests.conftest import SYSTEM

pytestmark = pytest.mark.django_db(transaction=True)


def truncate_order() -> list[str]:
    (statement,) = [s for s in sql_flush(no_style(), connection) if s.startswith("TRUNCATE")]
    return re.findall(r'"([^"]+)"', statement.split(";")[0])


def dsn() -> str:
    params = connection.get_connection_params()
    return psycopg.conninfo.make_conninfo(
        **{k: v for k, v in params.items() if k in ("dbname", "host", "port", "user", "password")}
    )


def reader_across_two_tables(last: str, first: str, started: threading.Event) -> threading.Thread:
    """A session that reads ``last`` in a transaction, pauses while the TRUNCATE takes its locks
    up to ``last``, then reads ``first``: a lock cycle with a TRUNCATE that began meanwhile."""

    def read() -> None:
        with psycopg.connect(dsn()) as other:
            with other.transaction():
                other.execute(f'SELECT count(*) FROM "{last}"').fetchone()
                started.set()
                time.sleep(0.6)
                try:
                    other.execute(f'SELECT count(*) FROM "{first}"').fetchone()
                except psycopg.errors.DeadlockDetected:
                    pass  # either side may be chosen; the test looks at the flush

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def flush_with(method) -> None:
    case = TransactionTestCase()
    method(case)


def test_plain_flush__a_reader_locking_in_the_other_order__deadlocks_and_fails():
    # the scenario is real: Django's own flush fails in it (if this stops failing, the test
    # below no longer proves anything and must find another way to make the deadlock)
    order = truncate_order()
    started = threading.Event()
    thread = reader_across_two_tables(order[-1], order[0], started)
    assert started.wait(5)
    plain = TransactionTestCase._fixture_teardown.plain
    with pytest.raises(CommandError, match="couldn't be flushed"):
        flush_with(plain)
    thread.join(10)


def test_patient_flush__same_reader__waits_for_it_and_empties_every_table():
    services.create_api_token(name="sel-bot", scopes=["config:read"], actor=SYSTEM)
    order = truncate_order()
    started = threading.Event()
    thread = reader_across_two_tables(order[-1], order[0], started)
    assert started.wait(5)
    flush_with(TransactionTestCase._fixture_teardown)
    thread.join(10)
    assert not ApiToken.objects.exists()
    assert Rollout.objects.filter(key="prompts_v2").exists()  # the data migrations replayed
