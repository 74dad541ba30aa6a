"""Instance reports: tell selcontrol which config this bot process serves (docs/fleet.md).

Every ``report_interval`` seconds (15 by default), and right after each new config is applied,
the client posts one small JSON document to ``POST /api/v1/instances/report``:

- who it is: a stable ``instance_id`` (``SELCONTROL_INSTANCE_ID`` or ``instance_id=``, else
  host, pid and a random suffix made once per process start), host, pid, client version and
  start time;
- the config revision it decides from (the server records when it first served each one: that
  is the acknowledgement of a change);
- its decisions per rollout, rule revision and variant, *cumulative* since it started (the
  server adds the difference to its hourly counts, so a resent report counts once);
- its event counters (buffered, spooled, dropped, ...) and its last config-sync error.

Decisions are counted in the decision path with a dict increment (see ``ConfigStore.variant``);
no decision ever makes a network call. The reporter never raises into the bot: failures are
logged once per streak and retried at the next interval.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger("selcontrol_client")

REPORT_PATH = "/api/v1/instances/report"
CLIENT_VERSION = "0.1.0"
RETIRED_KEPT = 8
"""Earlier config snapshots kept apart (a decision may still be counting on one for a moment
after the swap); older ones are folded into running totals."""
MISSING_BACKOFF = 300.0
"""After a 404 (a server without the fleet endpoint), wait this long before trying again."""


def default_instance_id() -> str:
    configured = os.environ.get("SELCONTROL_INSTANCE_ID", "").strip()
    if configured:
        return configured[:100]
    host = "".join(c if c.isalnum() or c in "_.-" else "-" for c in socket.gethostname())[:60]
    return f"{host or 'host'}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Reporter:
    """Builds reports from a client and accounts for their answers (no I/O here; the thread and
    asyncio clients post them)."""

    def __init__(self, client: Any, *, instance_id: str | None = None, interval: float = 15.0):
        self.client = client
        self.instance_id = instance_id or default_instance_id()
        self.host = socket.gethostname()[:255] or "unknown"
        self.pid = os.getpid()
        self.started_at = datetime.now(UTC)
        self.interval = interval
        self.sent = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_revision: int | None = None  # the revision of the last report the server took
        self.last_sent_at: float | None = None
        self._carried: dict[tuple[int, str, str], int] = {}
        self._fold_lock = threading.Lock()

    # -- payload --------------------------------------------------------------------------------

    def exposure_totals(self) -> dict[tuple[int, str, str], int]:
        """Decisions since start per (rule revision, rollout, variant)."""
        store = self.client.config
        with self._fold_lock:
            with store._write_lock:
                old = store.retired[:-RETIRED_KEPT] if len(store.retired) > RETIRED_KEPT else []
                if old:
                    del store.retired[: len(old)]
                snapshots = [*store.retired, store.snapshot]
            for snap in old:
                _add_counts(self._carried, snap)
            totals = dict(self._carried)
        for snap in snapshots:
            _add_counts(totals, snap)
        return totals

    def payload(self) -> dict[str, Any]:
        snap = self.client.config.snapshot
        events = self.client.events
        counters = {k: int(v) for k, v in events.stats.as_dict().items()}
        counters["buffered"] = events.buffered()
        counters["spool_pending"] = int(events.spool_pending)
        return {
            "instance_id": self.instance_id,
            "host": self.host,
            "pid": self.pid,
            "client_version": CLIENT_VERSION,
            "started_at": self.started_at.isoformat(),
            "revision": snap.revision,
            "config_source": snap.source,
            "exposures": [
                {"revision": rev, "rollout": key, "variant": variant, "count": n}
                for (rev, key, variant), n in sorted(self.exposure_totals().items())
            ],
            "events": counters,
            "last_sync_error": self.client.config_last_error,
        }

    # -- answers --------------------------------------------------------------------------------

    def done(self, status: int | None, error: str | None, revision: int) -> float:
        """Account for one POST; returns seconds until the next regular report."""
        if status is not None and 200 <= status < 300:
            self.sent += 1
            self.failures = 0
            self.last_error = None
            self.last_revision = revision
            self.last_sent_at = time.monotonic()
            return self.interval
        message = error or f"HTTP {status}"
        self.failures += 1
        if self.last_error != message:
            logger.warning("selcontrol: instance report failed (%s)", message)
        self.last_error = message
        if status == 404:
            return MISSING_BACKOFF
        return self.interval

    def changed(self) -> bool:
        """True when the served revision is not the one last reported."""
        return self.client.config.snapshot.revision != self.last_revision

    def stats(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "sent": self.sent,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_revision": self.last_revision,
        }


def _add_counts(totals: dict[tuple[int, str, str], int], snap: Any) -> None:
    for key, counts in list(snap.exposures.items()):
        rule = snap.rules.get(key)
        revision = rule.revision if rule is not None else snap.revision
        for variant, n in list(counts.items()):
            slot = (revision, key, variant)
            totals[slot] = totals.get(slot, 0) + n
