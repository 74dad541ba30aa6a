"""Events the bot reports (contract section 2, "Events"): builders, the buffer, the disk spool, and
the delivery rules shared by the thread and asyncio clients.

Delivery is at-least-once with idempotency keys: every event carries a generated ``id``, and the
server counts a resent id once. So the client may resend whenever it is unsure (a timeout, a
garbled answer, a restart before a spool file was deleted) without counting anything twice.

Where an event can be at any moment:

- the in-memory buffer (bounded; a deque the bot's code appends to),
- in flight (a batch being posted),
- the spool on disk (JSON lines, fsync'd; used when the server has been away for ``spool_after``
  seconds, when the buffer passes ``max_buffer``, and on ``close()``), replayed oldest first and
  deleted only after the server answered 2xx for all of it.

Events are dropped only when the disk spool is disabled or fails and the buffer is at its hard
cap, and rejected only when the server refuses that very event (a 4xx naming it).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

logger = logging.getLogger("selcontrol_client")

MAX_TEXT = 4000  # the exchange text is for human review; the server truncates anyway
MAX_TOKENS = 10**9  # the server's bound on token counts (metrics/ingest/events.py)
MAX_LATENCY_MS = 24 * 3600 * 1000.0
MIN_TS = datetime(2015, 1, 1, tzinfo=UTC)  # the server refuses older timestamps
MAX_FUTURE = timedelta(hours=1)  # the server refuses more than a day ahead; keep a margin
_SURROGATES = re.compile("[\ud800-\udfff]")


def backoff_delay(
    failures: int,
    *,
    base: float,
    cap: float = math.inf,
    max_doublings: int | None = None,
    jitter: bool = False,
) -> float:
    """The wait before the next try after ``failures`` (>= 1) failed ones in a row: ``base``
    doubled each time (at most ``max_doublings`` times), at most ``cap``, and with ``jitter``
    times a random factor from 0.5 to 1, so that many clients failing together do not retry
    together. The one backoff of the project: the client's config sync and event sender, the
    server's alert webhook."""
    doublings = failures - 1 if max_doublings is None else min(failures - 1, max_doublings)
    delay = min(cap, base * 2**doublings)
    return delay * random.uniform(0.5, 1.0) if jitter else delay


def new_event_id() -> str:
    """A fresh idempotency key (32 hex characters)."""
    return uuid.uuid4().hex


def clean_string(value: str) -> str:
    """The string with what no server can store replaced: a lone UTF-16 surrogate (not valid
    UTF-8, so PostgreSQL cannot take it) becomes U+FFFD, a NUL character is removed."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if _SURROGATES.search(value):
        value = _SURROGATES.sub("\ufffd", value)
    return value


def clean_value(value: Any) -> Any:
    """``clean_string`` applied to every string in a JSON-like value (dict keys included)."""
    if isinstance(value, str):
        return clean_string(value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    return value


def _ts(value: datetime | str | None) -> str:
    """An RFC 3339 UTC timestamp the server accepts. A naive datetime is taken as UTC; a value
    that cannot be read, or lies before 2015 or ahead of now (a broken clock, a placeholder such
    as year 9999), is replaced by now: the event happened when it is recorded, give or take."""
    now = datetime.now(UTC)
    if value is None:
        return now.isoformat()
    try:
        if isinstance(value, str):
            value = datetime.fromisoformat(clean_string(value).strip()[:40])
        if not isinstance(value, datetime):
            raise TypeError(f"not a datetime: {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
    except (ValueError, TypeError, OverflowError) as exc:
        logger.warning("selcontrol: unreadable event time %r (%s); using now", value, exc)
        return now.isoformat()
    if value < MIN_TS or value > now + MAX_FUTURE:
        logger.warning("selcontrol: event time %s is out of range; using now", value.isoformat())
        return now.isoformat()
    return value.isoformat()


def _nonneg_int(name: str, value: Any) -> int:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    number = int(value)
    if number < 0 or number > MAX_TOKENS:
        raise ValueError(f"{name} must be between 0 and {MAX_TOKENS}, got {value!r}")
    return number


def _id(value: Any) -> str:
    return clean_string(str(value))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return clean_string(str(value)[:MAX_TEXT])


def response_event(
    *,
    channel_id: Any,
    message_id: Any,
    variant: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    latency_ms: float,
    error: str | None = None,
    rollout: str = "prompts_v2",
    cached_tokens: int | None = None,
    cache_hit: bool | None = None,
    conversation_id: Any = None,
    user_text: str | None = None,
    response_text: str | None = None,
    ts: datetime | str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One bot reply. Raises ValueError/TypeError on values the server would refuse (negative,
    huge or non-finite numbers); strings are cleaned (``clean_string``), texts truncated and an
    unusable ``ts`` replaced by now, so what is built is what the server stores."""
    latency = float(latency_ms)
    if not math.isfinite(latency) or latency < 0:
        raise ValueError(f"latency_ms must be a finite number >= 0, got {latency_ms!r}")
    event: dict[str, Any] = {
        "id": _id(event_id or new_event_id()),
        "type": "response",
        "ts": _ts(ts),
        "channel_id": _id(channel_id),
        "message_id": _id(message_id),
        "rollout": _id(rollout),
        "variant": _id(variant),
        "model": _id(model)[:128],
        "input_tokens": _nonneg_int("input_tokens", input_tokens),
        "output_tokens": _nonneg_int("output_tokens", output_tokens),
        "latency_ms": min(latency, MAX_LATENCY_MS),
        "error": None if error is None else _id(error)[:64],
    }
    if cached_tokens is not None:
        event["cached_tokens"] = min(
            _nonneg_int("cached_tokens", cached_tokens), event["input_tokens"]
        )
    if cache_hit is not None:
        event["cache_hit"] = bool(cache_hit)
    if conversation_id is not None:
        event["conversation_id"] = _id(conversation_id)
    if user_text is not None:
        event["user_text"] = _text(user_text)
    if response_text is not None:
        event["response_text"] = _text(response_text)
    return event


def reaction_event(
    *,
    channel_id: Any,
    message_id: Any,
    emoji: str,
    action: str = "add",
    user_id: Any = None,
    ts: datetime | str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A user's emoji on a bot reply (``message_id`` is the bot's reply)."""
    if action not in ("add", "remove"):
        raise ValueError(f"action must be 'add' or 'remove', got {action!r}")
    event: dict[str, Any] = {
        "id": _id(event_id or new_event_id()),
        "type": "reaction",
        "ts": _ts(ts),
        "channel_id": _id(channel_id),
        "message_id": _id(message_id),
        "emoji": _id(emoji),
        "action": action,
    }
    if user_id is not None:
        event["user_id"] = _id(user_id)
    return event


def followup_event(
    *,
    channel_id: Any,
    message_id: Any,
    reply_to: Any,
    text: str | None = None,
    is_correction: bool | None = None,
    ts: datetime | str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A user's next message (``message_id``) after a bot reply (``reply_to``)."""
    event: dict[str, Any] = {
        "id": _id(event_id or new_event_id()),
        "type": "followup",
        "ts": _ts(ts),
        "channel_id": _id(channel_id),
        "message_id": _id(message_id),
        "reply_to": _id(reply_to),
    }
    if text is not None:
        event["text"] = _text(text)
    if is_correction is not None:
        event["is_correction"] = bool(is_correction)
    return event


# -- counters -----------------------------------------------------------------------------------


class Stats:
    """Event counters, safe to read from any thread."""

    FIELDS = (
        "recorded",
        "sent",
        "duplicates",
        "retried",
        "spooled",
        "replayed",
        "dropped",
        "rejected",
        "quarantined",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)

    def add(self, name: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._counts[name] += n

    def get(self, name: str) -> int:
        return self._counts[name]

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


# -- the disk spool -----------------------------------------------------------------------------


class Spool:
    """A directory of JSON-lines files, one batch per file, written atomically and fsync'd.

    File names sort by creation time, so replay goes oldest first. One spool directory per bot
    process: two processes replaying the same directory would only send duplicates (harmless,
    the server counts an id once), but would waste work.
    """

    def __init__(self, directory: str | os.PathLike, *, max_bytes: int = 256 * 1024 * 1024):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(".tmp-*"):
            stale.unlink(missing_ok=True)  # a write that never reached its rename

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("*.jsonl"))

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files() if p.exists())

    def pending(self) -> int:
        """Events waiting on disk (counts lines; the spool is small in normal operation)."""
        total = 0
        for path in self.files():
            try:
                with path.open("rb") as f:
                    total += sum(1 for line in f if line.strip())
            except FileNotFoundError:
                continue
        return total

    def write(self, events: list[dict[str, Any]]) -> bool:
        """Write one batch durably. False when the spool is full or the disk refuses."""
        if not events:
            return True
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events).encode()
        try:
            if self.size() + len(data) > self.max_bytes:
                logger.error(
                    "selcontrol: event spool %s is full (%s bytes)", self.directory, self.max_bytes
                )
                return False
            name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            tmp = self.directory / f".tmp-{name}"
            with tmp.open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / name)
            self._fsync_dir()
            return True
        except OSError as exc:
            logger.error(
                "selcontrol: could not spool %s events to %s (%s)", len(events), self.directory, exc
            )
            return False

    def read(self, path: Path) -> list[dict[str, Any]]:
        """The events of one file; a torn last line (a crash mid-write) is skipped."""
        events = []
        with path.open("rb") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    logger.warning("selcontrol: skipped a torn line in %s", path)
                    continue
                if isinstance(item, dict):
                    events.append(item)
        return events

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


# -- delivery rules -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a batch after one POST."""

    kind: str  # "ok", "retry", "split", "reject"
    accepted: int = 0
    duplicates: int = 0
    rejected: tuple[tuple[int, str, str], ...] = ()  # (index, id, error)
    retry_after: float | None = None
    message: str = ""
    status: int | None = None  # the HTTP status, None when there was no answer


RETRY_STATUSES = {401, 403, 404, 405, 408, 409, 425, 429}
"""4xx answers that say nothing against the events themselves: a token being rotated, an
endpoint not deployed yet, throttling. The events are kept (and spooled) and retried."""

OUTAGE_STATUSES = {502, 503, 504}
"""5xx answers a proxy gives while the server is away: never blamed on the events."""


def classify(status: int | None, body: bytes, headers: Any = None, batch_size: int = 1) -> Outcome:
    """Interpret the answer to ``POST /api/v1/events`` (status None: no answer at all)."""
    if status is None:
        return Outcome("retry", message="no answer")
    retry_after = None
    if headers is not None:
        raw = headers.get("Retry-After")
        if raw:
            try:
                retry_after = max(0.0, float(raw))
            except ValueError:
                retry_after = None
    if 200 <= status < 300:
        try:
            data = json.loads(body)
            accepted = int(data["accepted"])
            duplicates = int(data.get("duplicates", 0))
            rejected = tuple(
                (int(r.get("index", -1)), str(r.get("id", "")), str(r.get("error", "")))
                for r in (data.get("rejected") or [])
            )
        except Exception:  # noqa: BLE001
            # A 2xx we cannot read: resend (ids make that safe) rather than guess.
            return Outcome("retry", message=f"unreadable {status} answer", status=status)
        return Outcome(
            "ok", accepted=accepted, duplicates=duplicates, rejected=rejected, status=status
        )
    message = _error_message(body) or f"HTTP {status}"
    if status >= 500 or status in RETRY_STATUSES:
        return Outcome(
            "retry", retry_after=retry_after, message=f"HTTP {status}: {message}", status=status
        )
    if batch_size > 1:  # 400/413/422...: find the bad event(s) by halving
        return Outcome("split", message=f"HTTP {status}: {message}", status=status)
    return Outcome("reject", message=f"HTTP {status}: {message}", status=status)


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", ""))[:300]
    except Exception:  # noqa: BLE001
        return ""


def _blames_events(outcome: Outcome) -> bool:
    """A server error that may come from what was sent (a 500), not from the server being away
    (no answer, a proxy's 502-504, throttling)."""
    return (
        outcome.status is not None
        and outcome.status >= 500
        and (outcome.status not in OUTAGE_STATUSES)
    )


ISOLATE_AFTER = 2
"""Consecutive server errors for one batch before it is halved to find an event the server
cannot take (a server that fails on everything, e.g. its database away, still gets every event
resent: isolation only splits batches, and quarantines an event alone only when other events
were accepted in the meantime)."""


QUARANTINE_AFTER = 3
"""500s for one event alone before it is set aside, with other events accepted since its first
failure (a flaky server or a connection cut on the way fails an event once, not every time)."""


class EventCore:
    """The buffer and the bookkeeping; the thread and asyncio clients do the I/O around it.

    Only the sender (one thread or one task) calls the ``take_*``/``finish_*`` methods; ``put``
    may be called from any thread.

    No event may hold up the others: a batch the server answers with a 4xx is halved until the
    refused event is alone (then counted ``rejected``); a batch answered with a 500 twice in a
    row is halved the same way, and an event that still gets a 500 alone is moved behind the
    others; after QUARANTINE_AFTER such failures, with other events accepted since the first, it is
    written to ``<spool>/quarantine`` (counted ``quarantined``) instead of being retried for
    ever.
    """

    def __init__(
        self,
        *,
        spool: Spool | None,
        batch_size: int = 200,
        max_buffer: int = 10_000,
        spool_after: float = 5.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.spool = spool
        self.batch_size = max(1, min(batch_size, 1000))
        self.max_buffer = max(1, max_buffer)
        # Memory bound while the spool thread catches up with a burst; beyond it, drop oldest.
        self.hard_cap = self.max_buffer * 10
        self.spool_after = spool_after
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.wake = wake
        self.stats = Stats()
        self._buf: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._spool_lock = threading.Lock()  # one writer of spool files at a time
        self._spooling = False  # an overflow spool thread is running
        self.in_flight = 0
        self.limit = self.batch_size  # lowered while a refused batch is being halved
        self.failures = 0  # consecutive failed attempts
        self.server_errors = 0  # consecutive 500s (see ISOLATE_AFTER)
        self.down_since: float | None = None
        self.last_ok: float | None = None  # monotonic time of the last accepted batch
        # Monotonic time the oldest event in memory (buffered or in flight) was recorded, so
        # that during an outage it reaches the disk within spool_after of being recorded.
        self.oldest_put: float | None = None
        self._flight_oldest: float | None = None
        self.strikes: dict[str, tuple[int, float]] = {}  # event id -> (500s alone, first at)
        self.next_attempt = 0.0  # monotonic time before which the sender waits (backoff)
        self.flush_requested = 0  # > 0 while someone waits in flush()
        self.closed = False  # after close(): events go straight to the spool
        self.spool_pending = spool.pending() if spool is not None else 0
        if self.spool_pending:
            logger.info(
                "selcontrol: %s spooled events from an earlier run will be replayed",
                self.spool_pending,
            )

    # any thread ---------------------------------------------------------------------------------

    def put(self, event: dict[str, Any]) -> None:
        if self.closed:
            self._put_after_close(event)
            return
        with self._lock:
            if len(self._buf) >= self.hard_cap:
                # The sender has not kept up (no spool, or a failing disk): keep the newest.
                self._buf.popleft()
                self.stats.add("dropped")
                if self.stats.get("dropped") % 1000 == 1:
                    logger.error(
                        "selcontrol: event buffer full (%s); dropping the oldest events",
                        self.hard_cap,
                    )
            self._buf.append(event)
            size = len(self._buf)
            first = self.oldest_put is None
            if first:
                self.oldest_put = time.monotonic()
            overflow = size > self.max_buffer and self.spool is not None and not self._spooling
            if overflow:
                self._spooling = True
        self.stats.add("recorded")
        if overflow:
            # Off the bot's thread, and independent of a sender stuck in a slow request.
            threading.Thread(target=self.spool_buffer, name="selcontrol-spool", daemon=True).start()
        elif size >= self.batch_size or (first and self.failures):
            self.wake()  # a full batch; or, while the server is away, a new spool deadline

    def _put_after_close(self, event: dict[str, Any]) -> None:
        """An event recorded after close() (a reply that finished during shutdown): nobody will
        send it from memory, so it goes to disk now and is sent at the next start."""
        self.stats.add("recorded")
        if self.spool is not None:
            with self._spool_lock:
                written = self.spool.write([event])
            if written:
                self.stats.add("spooled")
                with self._lock:
                    self.spool_pending += 1
                return
        self.stats.add("dropped")
        logger.error("selcontrol: an event recorded after close() could not be spooled")

    def buffered(self) -> int:
        return len(self._buf)

    def idle(self) -> bool:
        """Nothing buffered, nothing in flight, nothing spooled."""
        return not self._buf and self.in_flight == 0 and self.spool_pending == 0

    def server_seen(self) -> None:
        """The server answered something (e.g. the config sync): retry now, not after backoff."""
        if self.failures:
            self.next_attempt = 0.0
            self.wake()

    # sender only --------------------------------------------------------------------------------

    def spool_deadline(self) -> float | None:
        """Monotonic time by which what is in memory must be on disk (None: no deadline). Only
        while the server is failing: the failure started, or the oldest event was recorded,
        ``spool_after`` seconds before it."""
        if self.spool is None or self.failures == 0 or self.down_since is None:
            return None
        starts = [self.down_since]
        if self.oldest_put is not None:
            starts.append(self.oldest_put)
        # A little early, so that the write itself (and a watcher's step) ends within it.
        return min(starts) + self.spool_after - min(0.25, self.spool_after / 5)

    def wait_time(self, now: float, flush_interval: float) -> float:
        """How long the sender may sleep before its next round: never past the spool deadline,
        so a long back-off does not keep events in memory longer than ``spool_after``."""
        deadline = self.spool_deadline() if self._buf else None
        if now < self.next_attempt:
            wait = self.next_attempt - now
        elif len(self._buf) >= self.batch_size or self.flush_requested or self.spool_pending:
            return 0.0
        else:
            wait = flush_interval
        if deadline is not None and deadline > now:
            # (a deadline already past is the spool watcher's: no busy loop if the disk refuses)
            wait = min(wait, deadline - now)
        return wait

    def ready(self, now: float) -> bool:
        return now >= self.next_attempt

    def should_spool(self, now: float) -> bool:
        if self.spool is None or not self._buf:
            return False
        if len(self._buf) > self.max_buffer:
            return True
        deadline = self.spool_deadline()
        return deadline is not None and now >= deadline

    def spool_buffer(self) -> None:
        """Move everything buffered to disk in batch-sized files (blocking file I/O)."""
        assert self.spool is not None
        with self._spool_lock:
            try:
                while True:
                    with self._lock:
                        n = min(self.batch_size, len(self._buf))
                        chunk = [self._buf.popleft() for _ in range(n)]
                        if not self._buf:
                            self.oldest_put = None
                    if not chunk:
                        return
                    if self.spool.write(chunk):
                        self.stats.add("spooled", len(chunk))
                        with self._lock:
                            self.spool_pending += len(chunk)
                    else:
                        self._put_back(chunk, time.monotonic())
                        return
            finally:
                self._spooling = False

    def take_batch(self) -> list[dict[str, Any]]:
        """The next batch: up to ``limit`` events, oldest first. An event the server already
        failed on alone (a suspect) goes alone when it is first in line, and is otherwise left
        out, so it never sinks a batch of others again."""
        with self._lock:
            if not self.strikes:
                batch = [self._buf.popleft() for _ in range(min(self.limit, len(self._buf)))]
            else:
                batch, held = [], []
                while self._buf and len(batch) < self.limit:
                    event = self._buf.popleft()
                    if str(event.get("id")) in self.strikes:
                        if not batch:
                            batch = [event]
                            break
                        held.append(event)
                    else:
                        batch.append(event)
                self._buf.extendleft(reversed(held))
            self._flight_oldest = self.oldest_put
            if not self._buf:
                self.oldest_put = None
        self.in_flight = len(batch)
        return batch

    def _put_back(self, batch: list[dict[str, Any]], since: float | None, *, last=()) -> None:
        """Return events to the front of the buffer (``last``: to its back), keeping the time
        the oldest of them was recorded."""
        with self._lock:
            self._buf.extendleft(reversed(batch))
            self._buf.extend(last)
            if self._buf:
                known = [t for t in (since, self.oldest_put) if t is not None]
                self.oldest_put = min(known) if known else time.monotonic()

    def next_spool_file(self) -> tuple[Path, list[dict[str, Any]]] | None:
        if self.spool is None or not self.spool_pending:
            return None
        for path in self.spool.files():
            try:
                return path, self.spool.read(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                logger.error("selcontrol: cannot read spool file %s (%s)", path, exc)
                return None
        self.spool_pending = 0
        return None

    def drop_empty_spool_file(self, path: Path) -> None:
        """A spool file ``next_spool_file`` read as holding no events: removed."""
        self._spool_done(path, 0)

    def finish(
        self, batch: list[dict[str, Any]], outcome: Outcome, now: float, *, from_spool: Path | None
    ) -> None:
        """Account for one POST of ``batch`` (from the buffer, or the whole of a spool file)."""
        self.in_flight = 0
        since = self._flight_oldest if from_spool is None else None
        if outcome.kind == "ok":
            self._succeeded(now)
            self.limit = min(self.batch_size, self.limit * 2)
            rejected_ids = set()
            for index, event_id, error in outcome.rejected:
                rejected_ids.add(index)
                logger.error("selcontrol: the server rejected event %s: %s", event_id, error)
            self.stats.add("rejected", len(rejected_ids))
            delivered = len(batch) - len(rejected_ids)
            self.stats.add("sent", delivered)
            self.stats.add("duplicates", outcome.duplicates)
            for event in batch:
                self.strikes.pop(str(event.get("id")), None)
            if from_spool is not None:
                self.stats.add("replayed", delivered)
                self._spool_done(from_spool, len(batch))
            return
        if outcome.kind == "split":
            logger.warning(
                "selcontrol: a batch of %s events was refused (%s); splitting it",
                len(batch),
                outcome.message,
            )
            self._split(batch, from_spool, since)
            return
        if outcome.kind == "reject":
            self.limit = self.batch_size
            logger.error(
                "selcontrol: the server rejected event %s: %s",
                batch[0].get("id") if batch else "?",
                outcome.message,
            )
            self.stats.add("rejected", len(batch))
            if from_spool is not None:
                self._spool_done(from_spool, len(batch))
            return
        # retry
        if _blames_events(outcome):
            self.server_errors += 1
            if self._isolate(batch, outcome, now, from_spool, since):
                return
        else:
            self.server_errors = 0
        self._retry_later(batch, outcome, now, from_spool, since)

    def _retry_later(
        self, batch, outcome: Outcome, now: float, from_spool: Path | None, since: float | None
    ) -> None:
        self.failures += 1
        if self.down_since is None:
            self.down_since = now
        self.stats.add("retried", len(batch))
        delay = backoff_delay(
            self.failures,
            base=self.backoff_base,
            cap=self.backoff_max,
            max_doublings=16,
            jitter=True,
        )
        if outcome.retry_after is not None:
            delay = max(delay, min(outcome.retry_after, self.backoff_max))
        if self.flush_requested:
            delay = min(delay, 1.0)
        self.next_attempt = now + delay
        if self.failures == 1 or self.failures % 10 == 0:
            logger.warning(
                "selcontrol: could not send %s events (%s); retrying in %.1fs",
                len(batch),
                outcome.message,
                delay,
            )
        if from_spool is None:
            self._put_back(batch, since)

    def _split(self, batch, from_spool: Path | None, since: float | None) -> None:
        if from_spool is not None:
            # Rewrite the file as two halves so each is retried on its own.
            assert self.spool is not None
            half = len(batch) // 2
            with self._spool_lock:
                if self.spool.write(batch[:half]) and self.spool.write(batch[half:]):
                    self.spool.remove(from_spool)
            return
        self._put_back(batch, since)
        self.limit = max(1, len(batch) // 2)

    def _isolate(
        self, batch, outcome: Outcome, now: float, from_spool: Path | None, since: float | None
    ) -> bool:
        """Keep a 500 that may come from one event from holding up the others. True when the
        batch was dealt with (split, moved back or quarantined); False to retry it as is."""
        suspect = any(str(e.get("id")) in self.strikes for e in batch)
        if len(batch) > 1:
            if self.server_errors < ISOLATE_AFTER and not suspect:
                return False
            logger.warning(
                "selcontrol: a batch of %s events failed %s times (%s); splitting it to find "
                "an event the server cannot take",
                len(batch),
                self.server_errors,
                outcome.message,
            )
            self._split(batch, from_spool, since)
            self.next_attempt = now + self.backoff_base
            return True
        event = batch[0]
        key = str(event.get("id"))
        count, first = self.strikes.get(key, (0, now))
        self.strikes[key] = (count + 1, first)
        if count + 1 >= QUARANTINE_AFTER and self.last_ok is not None and self.last_ok > first:
            self._quarantine(event, outcome, from_spool)
            return True
        # Behind the others: they go first, and their success shows the server is up.
        self.failures += 1
        if self.down_since is None:
            self.down_since = now
        self.stats.add("retried")
        self.limit = max(1, self.limit)
        delay = self.backoff_base
        if from_spool is not None:
            assert self.spool is not None
            with self._spool_lock:
                if self.spool.write(batch):  # a newer name: replayed after the other files
                    self.spool.remove(from_spool)
        else:
            with self._lock:
                others = bool(self._buf)
            if not others:
                delay = backoff_delay(
                    self.failures, base=self.backoff_base, cap=self.backoff_max, max_doublings=16
                )
            self._put_back([], since, last=[event])
        self.next_attempt = now + delay
        return True

    def _quarantine(self, event: dict[str, Any], outcome: Outcome, from_spool: Path | None):
        """Set aside an event the server fails on while it takes others: on disk under
        ``quarantine/`` for a person to look at, never resent by the client."""
        key = str(event.get("id"))
        self.strikes.pop(key, None)
        self.server_errors = 0
        self.stats.add("quarantined")
        kept = False
        if self.spool is not None:
            try:
                kept = Spool(self.spool.directory / "quarantine").write([event])
            except OSError:
                kept = False
        logger.error(
            "selcontrol: the server fails on event %s (%s) while it accepts others; %s",
            key,
            outcome.message,
            "set aside in the spool's quarantine/ directory" if kept else "dropped",
        )
        if from_spool is not None:
            self._spool_done(from_spool, 1)

    def _succeeded(self, now: float | None = None) -> None:
        if self.failures:
            logger.info("selcontrol: the events endpoint answers again")
        self.failures = 0
        self.server_errors = 0
        self.down_since = None
        self.next_attempt = 0.0
        self.last_ok = time.monotonic() if now is None else now

    def _spool_done(self, path: Path, n: int) -> None:
        assert self.spool is not None
        self.spool.remove(path)
        with self._lock:
            self.spool_pending = max(0, self.spool_pending - n)
