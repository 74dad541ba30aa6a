"""Read side of the rollout domain: the config document the SDKs sync, and decisions."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from selcontrol_client import assignment

from .models import ChannelOverride, ConfigState, Rollout


def current_revision() -> int:
    return _state()[0]


def _state() -> tuple[int, str]:
    """(revision, a stamp unique to this revision on this database, for cache keys)."""
    row = ConfigState.objects.filter(pk=1).values_list("revision", "updated_at").first()
    if row is None:
        return 0, "0"
    return int(row[0]), f"{row[0]}:{row[1].timestamp()}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def rollout_config(rollout: Rollout, overrides: list[ChannelOverride]) -> dict[str, Any]:
    now = timezone.now()
    return {
        "key": rollout.key,
        "enabled": rollout.enabled,
        "percentage": rollout.percentage,
        "simplified_percentage": rollout.simplified_percentage,
        "strategy": rollout.strategy,
        "salt": rollout.salt,
        "variants": {
            "control": rollout.control_variant,
            "treatment": rollout.treatment_variant,
            "simplified": rollout.simplified_variant,
        },
        "overrides": {
            o.channel_id: {"variant": o.variant, "expires_at": _iso(o.expires_at)}
            for o in overrides
            if o.expires_at is None or o.expires_at > now
        },
        "revision": rollout.revision,
    }


def build_config() -> dict[str, Any]:
    """The whole config document, uncached. Expired overrides are left out.

    The revision is read before the rollouts: the content is then never older than the revision
    it is labelled with, so a client holding this ETag cannot miss a change.
    """
    revision = current_revision()
    rollouts = list(Rollout.objects.order_by("key"))
    by_rollout: dict[int, list[ChannelOverride]] = {r.pk: [] for r in rollouts}
    for override in ChannelOverride.objects.order_by("channel_id"):
        by_rollout.setdefault(override.rollout_id, []).append(override)
    return {
        "revision": revision,
        "rollouts": [rollout_config(r, by_rollout[r.pk]) for r in rollouts],
    }


def get_config() -> tuple[int, dict[str, Any]]:
    revision, _stamp, document = _get_config()
    return revision, document


def _get_config() -> tuple[int, str, dict[str, Any]]:
    """(revision, document), from the cache when the revision has not moved.

    The cached copy is keyed by revision and lives at most a minute, so an override that
    expires drops out of the document within a minute (clients also honour expires_at).
    """
    revision, stamp = _state()
    key = f"selcontrol:config:{stamp}"
    document = cache.get(key)
    if document is None:
        document = build_config()
        if document["revision"] == revision:
            cache.set(key, document, 60)
    return revision, stamp, document


def get_rules() -> dict[str, assignment.Rule]:
    """Decision rules per rollout key, built from the cached config document."""
    _revision, key, document = _get_config()
    rules = _rules_memo.get(key)
    if rules is None:
        rules = {r["key"]: assignment.rule_from_config(r) for r in document["rollouts"]}
        _rules_memo.clear()
        _rules_memo[key] = rules
    return rules


_rules_memo: dict[str, dict[str, assignment.Rule]] = {}


# Long-poll support for GET /api/v1/config?wait=N: the SDK's push channel.
LONG_POLL_MAX_SECONDS = 25.0
"""A waiting request is answered after at most this long (below gunicorn's 30 s timeout)."""
LONG_POLL_STEP_SECONDS = 0.1
"""How often a waiting request re-reads the revision: one indexed single-row query."""


def wait_for_change(revision: int, seconds: float) -> None:
    """Return when the global revision differs from ``revision`` or ``seconds`` have passed.

    Polls the one-row ConfigState table every LONG_POLL_STEP_SECONDS. With the psycopg pool the
    connection goes back to the pool between reads, so a waiting bot holds a server thread but
    no database connection.
    """
    from django.db import connection

    deadline = time.monotonic() + min(max(seconds, 0.0), LONG_POLL_MAX_SECONDS)
    pooled = bool((connection.settings_dict.get("OPTIONS") or {}).get("pool"))
    while True:
        if pooled and not connection.in_atomic_block:
            connection.close()  # back to the pool while we sleep
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(LONG_POLL_STEP_SECONDS, remaining))
        if current_revision() != revision:
            return
