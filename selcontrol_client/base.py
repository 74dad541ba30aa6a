"""What the thread and asyncio clients share: settings, decisions, event recording, stats.

Nothing here does network I/O, and no public method raises into the bot: each catches, logs and
answers the safe thing (the control variant, ``None`` for an event that could not be built).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

from . import events as ev
from .aliases import MessageAliases
from .configstore import DEFAULT_ROLLOUT, ConfigStore
from .reporting import REPORT_PATH, Reporter  # noqa: F401  (REPORT_PATH re-exported)

logger = logging.getLogger("selcontrol_client")

CONFIG_PATH = "/api/v1/config"
EVENTS_PATH = "/api/v1/events"
USER_AGENT = "selcontrol-client/1"


def default_cache_dir() -> Path:
    """``SELCONTROL_CACHE_DIR``, else ``$XDG_CACHE_HOME/selcontrol`` (``~/.cache/selcontrol``).
    In a container, point it at a volume: the spool must outlive the container."""
    explicit = os.environ.get("SELCONTROL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "selcontrol"


class _Default:
    def __repr__(self) -> str:
        return "<default>"


DEFAULT: Any = _Default()


class ClientBase:
    """Settings and the I/O-free half of a selcontrol client.

    base_url, token: the server and a token with ``config:read`` and ``events:write`` (default:
        the ``SELCONTROL_URL`` and ``SELCONTROL_TOKEN`` environment variables). Without a URL the
        client runs offline: it decides from its files and keeps events on disk.
    bootstrap: a config document to start from when the server cannot be reached: a path to a
        JSON file as ``GET /api/v1/config`` returns it, or a dict such as
        :func:`legacy_env_document` builds from the bot's old environment variables. The newer
        (higher revision) of it and ``config_cache`` wins; any config from the server wins.
    config_cache: where the last good config is saved and read back at start (default
        ``~/.cache/selcontrol/config.json``; ``None`` to disable).
    spool_dir: where events wait on disk when the server is away (default
        ``~/.cache/selcontrol/spool``; ``None`` to disable, then events beyond the buffer are
        dropped and counted). ``SELCONTROL_CACHE_DIR`` moves both defaults.
    aliases_path: where the parts of multi-part replies are remembered (default: beside the
        config cache, else beside the spool; ``None``: in memory only). See
        :mod:`selcontrol_client.aliases`.
    push: hold a long-poll open (``GET /api/v1/config?wait=...``) so changes arrive within
        ~0.2 s; without it, or against a server that ignores ``wait``, an ETag poll every
        ``poll_interval`` seconds.
    report: send instance reports (docs/fleet.md) every ``report_interval`` seconds and right
        after each config change, as ``instance_id`` (default: ``SELCONTROL_INSTANCE_ID``, else
        host, pid and a random suffix per start).
    """

    def __init__(
        self,
        base_url: str | None = DEFAULT,
        token: str | None = DEFAULT,
        *,
        rollout: str = DEFAULT_ROLLOUT,
        bootstrap: str | os.PathLike | dict | None = None,
        config_cache: str | os.PathLike | None = DEFAULT,
        spool_dir: str | os.PathLike | None = DEFAULT,
        aliases_path: str | os.PathLike | None = DEFAULT,
        push: bool = True,
        poll_interval: float = 1.0,
        long_poll_wait: float = 20.0,
        batch_size: int = 200,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        spool_after: float = 5.0,
        timeout: float = 5.0,
        backoff_max: float = 30.0,
        report: bool = True,
        report_interval: float = 15.0,
        instance_id: str | None = None,
    ) -> None:
        if base_url is DEFAULT:
            base_url = os.environ.get("SELCONTROL_URL") or None
        if token is DEFAULT:
            token = os.environ.get("SELCONTROL_TOKEN") or None
        if config_cache is DEFAULT:
            config_cache = default_cache_dir() / "config.json"
        if spool_dir is DEFAULT:
            spool_dir = default_cache_dir() / "spool"
        if aliases_path is DEFAULT:
            beside = config_cache or (Path(spool_dir) / "x" if spool_dir else None)
            aliases_path = Path(beside).parent / "message_parts.jsonl" if beside else None
        self.aliases = MessageAliases(aliases_path)
        self.base_url = base_url.rstrip("/") if base_url else None
        self.token = token
        self.rollout = rollout
        self.push = push
        self.poll_interval = poll_interval
        self.long_poll_wait = long_poll_wait
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.backoff_max = backoff_max
        self.config = ConfigStore(cache_path=config_cache)
        self.config_errors = 0
        self.config_last_error: str | None = None
        self.config_last_ok: float | None = None
        spool = None
        if spool_dir is not None:
            try:
                spool = ev.Spool(spool_dir)
            except OSError as exc:
                logger.error("selcontrol: cannot use spool directory %s (%s)", spool_dir, exc)
        self.events = ev.EventCore(
            spool=spool,
            batch_size=batch_size,
            max_buffer=max_buffer,
            spool_after=spool_after,
            backoff_max=backoff_max,
        )
        self.reporter = (
            Reporter(self, instance_id=instance_id, interval=report_interval) if report else None
        )
        for path in (config_cache, bootstrap):
            if path is not None:
                self._load_file(path)
        # The hot path: bind the store's method directly (one Python call less per decision;
        # same signature and behaviour as ``variant`` below).
        self.variant = self.config.variant  # type: ignore[method-assign]

    def _load_file(self, path: str | os.PathLike | dict) -> None:
        """Start from a file (or an in-memory document) unless what we have is newer."""
        try:
            current = self.config.snapshot
            before = current.revision if current.source != "none" else -1
            probe = ConfigStore()
            if isinstance(path, dict):
                loaded = probe.apply(path, etag=None, source="bootstrap")
            else:
                loaded = probe.load_file(path)
            if loaded and probe.snapshot.revision > before:
                self.config.apply(probe.snapshot.document, etag=None, source="bootstrap")
        except Exception:  # noqa: BLE001
            logger.exception("selcontrol: could not load %s", path)

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    # -- decisions (microseconds, never raise) ---------------------------------------------------

    def variant(self, rollout: str, channel_id: Any) -> str:
        """The variant of ``rollout`` for this channel (e.g. ``"v1"``, ``"v2_full"``)."""
        return self.config.variant(rollout, channel_id)

    def prompt_variant(self, channel_id: Any) -> str:
        """The variant of the client's default rollout (``prompts_v2``) for this channel."""
        return self.config.variant(self.rollout, channel_id)

    def should_use_prompts_v2(self, channel_id: Any) -> bool:
        """True when the channel gets a treatment variant of ``prompts_v2`` (not the control)."""
        try:
            return self.config.variant(self.rollout, channel_id) != self.config.control(
                self.rollout
            )
        except Exception:  # noqa: BLE001
            return False

    def decide(self, rollout: str, channel_id: Any) -> tuple[str, str]:
        """``(variant, reason)``, as the server's decide endpoint would answer."""
        return self.config.decide(rollout, channel_id)

    @property
    def revision(self) -> int:
        """The config revision the client decides from (0: none yet)."""
        return self.config.snapshot.revision

    # -- events (never block, never raise) -------------------------------------------------------

    def record(self, event: dict[str, Any]) -> str | None:
        """Queue a ready-made event (it needs an ``id``); returns the id. Strings are cleaned
        (lone surrogates, NUL) and a part of a multi-part reply is translated to the reply."""
        try:
            if not isinstance(event, dict) or not event.get("id"):
                raise ValueError("an event is a dict with an 'id'")
            event = ev.clean_value(event)
            if event.get("type") == "reaction" and "message_id" in event:
                event["message_id"] = self.aliases.resolve(event["message_id"])
            elif event.get("type") == "followup" and "reply_to" in event:
                event["reply_to"] = self.aliases.resolve(event["reply_to"])
            self.events.put(event)
            return str(event["id"])
        except Exception as exc:  # noqa: BLE001
            self.events.stats.add("dropped")
            logger.error("selcontrol: dropped an event that could not be queued (%s)", exc)
            return None

    def _build(self, builder, kwargs: dict[str, Any]) -> str | None:
        try:
            event = builder(**kwargs)
        except Exception as exc:  # noqa: BLE001
            self.events.stats.add("dropped")
            logger.error(
                "selcontrol: dropped a %s event with bad values (%s)",
                builder.__name__.removesuffix("_event"),
                exc,
            )
            return None
        try:
            self.events.put(event)
        except Exception as exc:  # noqa: BLE001
            self.events.stats.add("dropped")
            logger.error("selcontrol: dropped an event that could not be queued (%s)", exc)
            return None
        return event["id"]

    def record_response(self, *, extra_message_ids: Any = (), **kwargs: Any) -> str | None:
        """A bot reply: channel_id, message_id, variant, model, input_tokens, output_tokens,
        latency_ms, error=None, and the optional fields of the contract. Returns the event id.

        ``extra_message_ids``: the other Discord messages of a reply sent in several parts
        (``message_id`` is the first); reactions and follow-ups on any part count for the reply.
        """
        kwargs.setdefault("rollout", self.rollout)
        self.add_message_parts(kwargs.get("message_id"), extra_message_ids)
        return self._build(ev.response_event, kwargs)

    def record_proactive(self, **kwargs: Any) -> str | None:
        """A message the bot sends unprompted (Sel's inactivity ping) with a prompt version and
        an LLM call: recorded as a reply without ``user_text``, so its cost, latency and the
        reactions and follow-ups it gets count for its variant. Same arguments as
        :meth:`record_response`."""
        kwargs.pop("user_text", None)
        return self.record_response(**kwargs)

    def add_message_parts(self, message_id: Any, extra_message_ids: Any) -> None:
        """Note parts of a reply sent after it was recorded (see :meth:`record_response`)."""
        try:
            if message_id is not None and extra_message_ids:
                parts = (
                    [extra_message_ids]
                    if isinstance(extra_message_ids, str | int)
                    else list(extra_message_ids)
                )
                self.aliases.add(ev.clean_string(str(message_id)), parts)
        except Exception:  # noqa: BLE001
            logger.exception("selcontrol: could not note the parts of reply %r", message_id)

    def record_reaction(self, **kwargs: Any) -> str | None:
        """A user's emoji on a bot reply: channel_id, message_id (the bot's reply, or any part
        of it), emoji, action ("add"/"remove"), user_id=None."""
        if "message_id" in kwargs:
            kwargs["message_id"] = self.aliases.resolve(kwargs["message_id"])
        return self._build(ev.reaction_event, kwargs)

    def record_followup(self, **kwargs: Any) -> str | None:
        """A user's next message after a bot reply: channel_id, message_id, reply_to (the
        bot's reply, or any part of it), text=None, is_correction=None."""
        if "reply_to" in kwargs:
            kwargs["reply_to"] = self.aliases.resolve(kwargs["reply_to"])
        return self._build(ev.followup_event, kwargs)

    # -- visibility -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters the bot can log or export: events sent, retried, spooled, dropped, rejected,
        and where the config stands."""
        snap = self.config.snapshot
        events = self.events.stats.as_dict()
        events["buffered"] = self.events.buffered()
        events["spool_pending"] = self.events.spool_pending
        return {
            "events": events,
            "config": {
                "revision": snap.revision,
                "source": snap.source,
                "age_seconds": round(time.time() - snap.received_at, 3)
                if snap.received_at
                else None,
                "refused": self.config.refused,
                "errors": self.config_errors,
                "last_error": self.config_last_error,
            },
        }

    def _report_done(self, status: int | None, error: str | None, revision: int) -> float:
        """Account for one instance report; seconds until the next one (sooner after a failed
        report of a new revision, so a rollback is acknowledged as soon as the server is back)."""
        assert self.reporter is not None
        pause = self.reporter.done(status, error, revision)
        if self.reporter.failures and self.reporter.changed():
            return ev.backoff_delay(
                self.reporter.failures + 1, base=0.5, cap=pause, max_doublings=5
            )
        return pause * random.uniform(0.9, 1.1)

    # -- shared sync-loop rules -------------------------------------------------------------------

    def _config_ok(self) -> None:
        self.config_last_ok = time.time()
        self.config_last_error = None
        self.events.server_seen()

    def _pause_after_sync(self, wait: float, status: int, elapsed: float) -> float:
        """Seconds to wait before the next config request, after a good answer."""
        if not self.push or self.config.snapshot.etag is None:
            return self.poll_interval  # polling (or a server that sends no ETag)
        if wait and status == 304 and elapsed < min(wait / 2, 0.5):
            return self.poll_interval  # the server ignored ?wait: poll instead
        return 0.0  # straight back into the long-poll (also right after the first fetch)

    def _config_failed(self, message: str, failures: int) -> float:
        """Record a failed sync; returns how long to wait before the next try."""
        self.config_errors += 1
        if self.config_last_error != message:
            logger.warning(
                "selcontrol: config sync failed (%s); deciding from revision %s",
                message,
                self.config.snapshot.revision,
            )
        self.config_last_error = message
        return ev.backoff_delay(
            failures, base=0.5, cap=self.backoff_max, max_doublings=10, jitter=True
        )

    def _handle_config_answer(self, status: int, body: bytes, etag: str | None) -> str | None:
        """Apply a config answer; returns an error message, or None when all is well."""
        if status == 304:
            return None
        if status != 200:
            return f"HTTP {status}"
        try:
            document = json.loads(body)
        except ValueError:
            self.config.refused += 1
            return "the server sent a config that is not JSON"
        if not self.config.apply(document, etag=etag, source="server"):
            return "the server sent a config of the wrong shape"
        return None
