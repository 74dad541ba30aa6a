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
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger("selcontrol_client")

MAX_TEXT = 4000  # the exchange text is for human review; the server truncates anyway


def new_event_id() -> str:
    """A fresh idempotency key (32 hex characters)."""
    return uuid.uuid4().hex


def _ts(value: datetime | str | None) -> str:
    if value is None:
        value = datetime.now(UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat()
    return str(value)


def _nonneg_int(name: str, value: Any) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return number


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text[:MAX_TEXT]


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
    """One bot reply. Raises ValueError/TypeError on values the server would refuse."""
    latency = float(latency_ms)
    if latency < 0:
        raise ValueError(f"latency_ms must be >= 0, got {latency_ms!r}")
    event: dict[str, Any] = {
        "id": event_id or new_event_id(),
        "type": "response",
        "ts": _ts(ts),
        "channel_id": str(channel_id),
        "message_id": str(message_id),
        "rollout": str(rollout),
        "variant": str(variant),
        "model": str(model),
        "input_tokens": _nonneg_int("input_tokens", input_tokens),
        "output_tokens": _nonneg_int("output_tokens", output_tokens),
        "latency_ms": latency,
        "error": None if error is None else str(error),
    }
    if cached_tokens is not None:
        event["cached_tokens"] = _nonneg_int("cached_tokens", cached_tokens)
    if cache_hit is not None:
        event["cache_hit"] = bool(cache_hit)
    if conversation_id is not None:
        event["conversation_id"] = str(conversation_id)
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
        "id": event_id or new_event_id(),
        "type": "reaction",
        "ts": _ts(ts),
        "channel_id": str(channel_id),
        "message_id": str(message_id),
        "emoji": str(emoji),
        "action": action,
    }
    if user_id is not None:
        event["user_id"] = str(user_id)
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
        "id": event_id or new_event_id(),
        "type": "followup",
        "ts": _ts(ts),
        "channel_id": str(channel_id),
        "message_id": str(message_id),
        "reply_to": str(reply_to),
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


RETRY_STATUSES = {401, 403, 404, 405, 408, 409, 425, 429}
"""4xx answers that say nothing against the events themselves: a token being rotated, an
endpoint not deployed yet, throttling. The events are kept (and spooled) and retried."""


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
            return Outcome("retry", message=f"unreadable {status} answer")
        return Outcome("ok", accepted=accepted, duplicates=duplicates, rejected=rejected)
    message = _error_message(body) or f"HTTP {status}"
    if status >= 500 or status in RETRY_STATUSES:
        return Outcome("retry", retry_after=retry_after, message=f"HTTP {status}: {message}")
    if batch_size > 1:  # 400/413/422...: find the bad event(s) by halving
        return Outcome("split", message=f"HTTP {status}: {message}")
    return Outcome("reject", message=f"HTTP {status}: {message}")


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", ""))[:300]
    except Exception:  # noqa: BLE001
        return ""


class EventCore:
    """The buffer and the bookkeeping; the thread and asyncio clients do the I/O around it.

    Only the sender (one thread or one task) calls the ``take_*``/``finish_*`` methods; ``put``
    may be called from any thread.
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
        self.down_since: float | None = None
        self.next_attempt = 0.0  # monotonic time before which the sender waits (backoff)
        self.flush_requested = 0  # > 0 while someone waits in flush()
        self.spool_pending = spool.pending() if spool is not None else 0
        if self.spool_pending:
            logger.info(
                "selcontrol: %s spooled events from an earlier run will be replayed",
                self.spool_pending,
            )

    # any thread ---------------------------------------------------------------------------------

    def put(self, event: dict[str, Any]) -> None:
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
            overflow = size > self.max_buffer and self.spool is not None and not self._spooling
            if overflow:
                self._spooling = True
        self.stats.add("recorded")
        if overflow:
            # Off the bot's thread, and independent of a sender stuck in a slow request.
            threading.Thread(target=self.spool_buffer, name="selcontrol-spool", daemon=True).start()
        elif size >= self.batch_size:
            self.wake()

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

    def wait_time(self, now: float, flush_interval: float) -> float:
        """How long the sender may sleep before its next round."""
        if now < self.next_attempt:
            return self.next_attempt - now
        if len(self._buf) >= self.batch_size or self.flush_requested or self.spool_pending:
            return 0.0
        return flush_interval

    def ready(self, now: float) -> bool:
        return now >= self.next_attempt

    def should_spool(self, now: float) -> bool:
        if self.spool is None or not self._buf:
            return False
        if len(self._buf) > self.max_buffer:
            return True
        return self.down_since is not None and now - self.down_since >= self.spool_after

    def spool_buffer(self) -> None:
        """Move everything buffered to disk in batch-sized files (blocking file I/O)."""
        assert self.spool is not None
        with self._spool_lock:
            try:
                while True:
                    with self._lock:
                        n = min(self.batch_size, len(self._buf))
                        chunk = [self._buf.popleft() for _ in range(n)]
                    if not chunk:
                        return
                    if self.spool.write(chunk):
                        self.stats.add("spooled", len(chunk))
                        with self._lock:
                            self.spool_pending += len(chunk)
                    else:
                        with self._lock:
                            self._buf.extendleft(reversed(chunk))
                        return
            finally:
                self._spooling = False

    def take_batch(self) -> list[dict[str, Any]]:
        with self._lock:
            batch = [self._buf.popleft() for _ in range(min(self.limit, len(self._buf)))]
        self.in_flight = len(batch)
        return batch

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

    def finish(
        self, batch: list[dict[str, Any]], outcome: Outcome, now: float, *, from_spool: Path | None
    ) -> None:
        """Account for one POST of ``batch`` (from the buffer, or the whole of a spool file)."""
        self.in_flight = 0
        if outcome.kind == "ok":
            self._succeeded()
            self.limit = min(self.batch_size, self.limit * 2)
            rejected_ids = set()
            for index, event_id, error in outcome.rejected:
                rejected_ids.add(index)
                logger.error("selcontrol: the server rejected event %s: %s", event_id, error)
            self.stats.add("rejected", len(rejected_ids))
            delivered = len(batch) - len(rejected_ids)
            self.stats.add("sent", delivered)
            self.stats.add("duplicates", outcome.duplicates)
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
            if from_spool is not None:
                # Rewrite the file as two halves so each is retried on its own.
                half = len(batch) // 2
                if self.spool.write(batch[:half]) and self.spool.write(batch[half:]):
                    self.spool.remove(from_spool)
                return
            with self._lock:
                self._buf.extendleft(reversed(batch))
            self.limit = max(1, len(batch) // 2)
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
        self.failures += 1
        if self.down_since is None:
            self.down_since = now
        self.stats.add("retried", len(batch))
        delay = min(self.backoff_max, self.backoff_base * 2 ** min(self.failures - 1, 16))
        delay *= random.uniform(0.5, 1.0)
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
            with self._lock:
                self._buf.extendleft(reversed(batch))

    def _succeeded(self) -> None:
        if self.failures:
            logger.info("selcontrol: the events endpoint answers again")
        self.failures = 0
        self.down_since = None
        self.next_attempt = 0.0

    def _spool_done(self, path: Path, n: int) -> None:
        assert self.spool is not None
        self.spool.remove(path)
        with self._lock:
            self.spool_pending = max(0, self.spool_pending - n)
