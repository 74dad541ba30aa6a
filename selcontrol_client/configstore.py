"""The synced config and the local decisions made from it.

A :class:`ConfigStore` holds one immutable :class:`Snapshot` (revision, ETag, rules). A new config
replaces the snapshot with a single reference assignment, so the read path (``variant``) takes no
lock: it reads ``self._snapshot`` once and works on that object alone.

Fail-static: a document that does not parse, or whose shape is wrong, is refused as a whole and the
last good snapshot stays in place. With no snapshot at all every rollout answers its control
variant (``v1`` for ``prompts_v2``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import assignment

logger = logging.getLogger("selcontrol_client")

DEFAULT_ROLLOUT = "prompts_v2"
DEFAULT_CONTROL = "v1"
MEMO_LIMIT = 65536
"""Decisions memoized per snapshot; the memo is cleared when it reaches this many entries."""


class ConfigError(ValueError):
    """A config document the client refuses (kept out of the bot's code path)."""


@dataclass(slots=True)
class Snapshot:
    revision: int
    etag: str | None
    rules: dict[str, assignment.Rule]
    source: str  # "server", "bootstrap" or "none"
    received_at: float
    document: dict[str, Any] | None = None
    # Memo of decisions that cannot change while this snapshot is live, per rollout key, then
    # channel id as the caller passed it. Only sticky rollouts have one (daily rotation moves
    # with the date), and channels with an expiring override are never put in it.
    memo: dict[str, dict[Any, str]] = field(default_factory=dict)
    # Channels whose decision depends on the clock (an override with expires_at), per rollout.
    timed: dict[str, frozenset[str]] = field(default_factory=dict)
    # Decisions made from this snapshot, per rollout key then variant (one dict increment per
    # decision; read by selcontrol_client.reporting). Only rollouts with a rule are counted.
    exposures: dict[str, dict[str, int]] = field(default_factory=dict)


EMPTY = Snapshot(revision=0, etag=None, rules={}, source="none", received_at=0.0)


def parse_document(document: Any) -> dict[str, assignment.Rule]:
    """Validate a config document (``GET /api/v1/config``) and build its rules, or raise
    :class:`ConfigError` naming what is wrong. All or nothing: one bad rollout refuses it all."""
    if not isinstance(document, dict):
        raise ConfigError("the config document is not a JSON object")
    revision = document.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        raise ConfigError("the config document has no integer 'revision'")
    rollouts = document.get("rollouts")
    if not isinstance(rollouts, list):
        raise ConfigError("the config document has no 'rollouts' list")
    rules: dict[str, assignment.Rule] = {}
    for index, item in enumerate(rollouts):
        if not isinstance(item, dict):
            raise ConfigError(f"rollouts[{index}] is not an object")
        try:
            for name in ("key", "enabled", "percentage"):
                if name not in item:
                    raise ConfigError(f"rollouts[{index}] has no {name!r}")
            if not isinstance(item["enabled"], bool):
                raise ConfigError(f"rollouts[{index}].enabled is not a boolean")
            for name in ("percentage", "simplified_percentage"):
                value = item.get(name, 0)
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
                    raise ConfigError(f"rollouts[{index}].{name} is not an integer 0..100")
            overrides = item.get("overrides") or {}
            if not isinstance(overrides, dict) or not all(
                isinstance(o, dict) and isinstance(o.get("variant"), str)
                for o in overrides.values()
            ):
                raise ConfigError(f"rollouts[{index}].overrides is not a map of variants")
            if not isinstance(item.get("variants") or {}, dict):
                raise ConfigError(f"rollouts[{index}].variants is not an object")
            rule = assignment.rule_from_config(item)
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"rollouts[{index}] is invalid: {exc}") from None
        rules[rule.key] = rule
    return rules


def _timed_channels(rules: dict[str, assignment.Rule]) -> dict[str, frozenset[str]]:
    return {
        key: frozenset(c for c, o in rule.overrides.items() if o.expires_at is not None)
        for key, rule in rules.items()
    }


class ConfigStore:
    """The current snapshot plus the decision functions. Thread-safe for readers without locks;
    writers (the sync loop) serialise on a small lock."""

    def __init__(self, *, cache_path: str | os.PathLike | None = None) -> None:
        self._snapshot: Snapshot = EMPTY
        self._write_lock = threading.Lock()
        self.cache_path = Path(cache_path) if cache_path else None
        self.refused = 0  # documents refused as bad payloads
        self.changed = threading.Condition()  # notified on every new snapshot (tests, waiters)
        self.retired: list[Snapshot] = []  # earlier snapshots, for their exposure counts
        self.listeners: list = []  # called with no argument after every new snapshot; never raise

    # -- writes ---------------------------------------------------------------------------------

    def apply(self, document: Any, *, etag: str | None, source: str = "server") -> bool:
        """Replace the snapshot with this document if it is valid. Returns True if it changed.
        Never raises: a bad document is logged, counted in ``refused``, and ignored."""
        try:
            rules = parse_document(document)
        except ConfigError as exc:
            self.refused += 1
            logger.warning(
                "selcontrol: refused a bad config from %s (%s); keeping revision %s",
                source,
                exc,
                self._snapshot.revision,
            )
            return False
        except Exception:  # noqa: BLE001 - never into the bot
            self.refused += 1
            logger.exception("selcontrol: could not read a config from %s", source)
            return False
        snapshot = Snapshot(
            revision=int(document["revision"]),
            etag=etag,
            rules=rules,
            source=source,
            received_at=time.time(),
            document=document,
            timed=_timed_channels(rules),
            memo={k: {} for k, r in rules.items() if r.strategy == assignment.STICKY},
            exposures={k: {} for k in rules},
        )
        with self._write_lock:
            previous = self._snapshot
            self._snapshot = snapshot  # the one atomic swap readers see
            if previous.rules:
                self.retired.append(previous)
        if previous.revision != snapshot.revision or previous.source != snapshot.source:
            logger.info("selcontrol: config revision %s from %s", snapshot.revision, source)
        with self.changed:
            self.changed.notify_all()
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001
                logger.exception("selcontrol: config listener failed")
        if source == "server" and self.cache_path is not None:
            self._save(document)
        return True

    def load_file(self, path: str | os.PathLike) -> bool:
        """Start from a config document saved on disk (a bootstrap file, or the cache of the
        last good config). A missing or bad file is logged and ignored."""
        try:
            text = Path(path).read_text(encoding="utf-8")
            document = json.loads(text)
        except FileNotFoundError:
            logger.info("selcontrol: no bootstrap config at %s", path)
            return False
        except Exception as exc:  # noqa: BLE001
            self.refused += 1
            logger.warning("selcontrol: could not read bootstrap config %s (%s)", path, exc)
            return False
        if self._snapshot.source == "server":
            return False  # never step back from a live config to a file
        return self.apply(document, etag=None, source="bootstrap")

    def _save(self, document: dict[str, Any]) -> None:
        """Write the last good config atomically next to where it will be read back."""
        path = self.cache_path
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(document, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except Exception as exc:  # noqa: BLE001
            logger.warning("selcontrol: could not save the config to %s (%s)", path, exc)

    # -- reads (hot path) -----------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def variant(self, rollout: str, channel_id: Any, default: str | None = None) -> str:
        """The variant of ``rollout`` for this channel, decided locally; never raises."""
        snap = self._snapshot
        try:
            memo = snap.memo.get(rollout)
            if memo is not None:
                hit = memo.get(channel_id)
                if hit is not None:
                    counts = snap.exposures[rollout]
                    counts[hit] = counts.get(hit, 0) + 1
                    return hit
            rule = snap.rules.get(rollout)
            if rule is None:
                return default or DEFAULT_CONTROL
            cid = str(channel_id)
            result = assignment.decide(rule, cid)[0]
            if memo is not None and cid not in snap.timed[rollout]:
                if len(memo) >= MEMO_LIMIT:
                    memo.clear()
                memo[channel_id] = result
            counts = snap.exposures[rollout]
            counts[result] = counts.get(result, 0) + 1
            return result
        except Exception:  # noqa: BLE001 - a decision must never raise into the bot
            logger.exception("selcontrol: decision failed for %s/%r", rollout, channel_id)
            rule = snap.rules.get(rollout) if isinstance(snap.rules, dict) else None
            return getattr(rule, "control", None) or default or DEFAULT_CONTROL

    def decide(self, rollout: str, channel_id: Any) -> tuple[str, str]:
        """``(variant, reason)`` like the server's decide endpoint; reason ``no_config`` when the
        client knows nothing of this rollout. Never raises."""
        try:
            rule = self._snapshot.rules.get(rollout)
            if rule is None:
                return DEFAULT_CONTROL, "no_config"
            return assignment.decide(rule, str(channel_id))
        except Exception:  # noqa: BLE001
            logger.exception("selcontrol: decision failed for %s/%r", rollout, channel_id)
            return DEFAULT_CONTROL, "error"

    def control(self, rollout: str) -> str:
        rule = self._snapshot.rules.get(rollout)
        return rule.control if rule is not None else DEFAULT_CONTROL


_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}
LEGACY_NAMES = (
    "ENABLE_PROMPTS_V2",
    "PROMPTS_V2_ROLLOUT_PERCENTAGE",
    "PROMPTS_V2_SIMPLIFIED_ROLLOUT_PERCENTAGE",
)


def legacy_document(enabled: bool, percentage: int, simplified: int) -> dict[str, Any]:
    """A config document (revision 0) that decides as the bot's old rule with these values.
    Percentages outside 0..100 decide as their bound does in the bot's rule."""
    return {
        "revision": 0,
        "rollouts": [
            {
                "key": DEFAULT_ROLLOUT,
                "enabled": bool(enabled),
                "percentage": max(0, min(100, int(percentage))),
                "simplified_percentage": max(0, min(100, int(simplified))),
                "strategy": assignment.STICKY,
                "salt": "",
                "variants": {
                    "control": "v1",
                    "treatment": "v2_full",
                    "simplified": "v2_simplified",
                },
                "overrides": {},
                "revision": 0,
            }
        ],
    }


def legacy_settings_document(settings: Any) -> dict[str, Any]:
    """The bootstrap document from the Sel bot's own ``Settings`` object: the values pydantic
    already read from the environment and ``.env`` (``enable_prompts_v2``,
    ``prompts_v2_rollout_percentage``, ``prompts_v2_simplified_rollout_percentage``), so the
    client decides exactly as ``Settings.select_prompt_variant`` until the first sync."""
    return legacy_document(
        getattr(settings, "enable_prompts_v2", True),
        getattr(settings, "prompts_v2_rollout_percentage", 100),
        getattr(settings, "prompts_v2_simplified_rollout_percentage", 0),
    )


def read_env_file(path: str | os.PathLike) -> dict[str, str]:
    """``KEY=VALUE`` lines of a ``.env`` file (comments, ``export``, quotes) as python-dotenv
    reads them for these simple values; a missing file is empty."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return values
    except OSError as exc:
        logger.warning("selcontrol: cannot read %s (%s)", path, exc)
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, value = line.split("=", 1)
        value = value.strip()
        if value[:1] in ("'", '"') and value.endswith(value[0]) and len(value) >= 2:
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def legacy_env_document(
    environ: dict[str, str] | None = None, *, env_file: str | os.PathLike | None = None
) -> dict[str, Any]:
    """A config document (revision 0) equal to the bot's old environment-variable rule.

    ``ENABLE_PROMPTS_V2`` (default true), ``PROMPTS_V2_ROLLOUT_PERCENTAGE`` (default 100) and
    ``PROMPTS_V2_SIMPLIFIED_ROLLOUT_PERCENTAGE`` (default 0), read like the bot's pydantic
    ``Settings`` reads them: the environment first, then ``env_file`` (the bot's ``.env``);
    names in any case; an empty value counts as unset (the bot's ``env_ignore_empty``), so the
    default applies. A value the bot would refuse at start also falls back to the default.
    Given as ``bootstrap=``, a bot that has never reached selcontrol keeps deciding exactly as
    it did before the switch; revision 0 means any config from the server replaces it. With the
    bot's ``Settings`` at hand, :func:`legacy_settings_document` is the surer way.
    """
    sources = [os.environ if environ is None else environ]
    if env_file is not None:
        sources.append(read_env_file(env_file))

    def raw(name: str) -> str | None:
        for source in sources:
            for key, value in source.items():
                if key.upper() == name and str(value).strip() != "":
                    return str(value).strip()
        return None

    def number(name: str, default: int) -> int:
        value = raw(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            pass
        try:  # pydantic takes "50.0" as 50 too
            number = float(value)
            return int(number) if number.is_integer() and "." in value else default
        except ValueError:
            return default

    flag = (raw("ENABLE_PROMPTS_V2") or "true").lower()
    enabled = flag in _TRUE or flag not in _FALSE
    return legacy_document(
        enabled,
        number("PROMPTS_V2_ROLLOUT_PERCENTAGE", 100),
        number("PROMPTS_V2_SIMPLIFIED_ROLLOUT_PERCENTAGE", 0),
    )
