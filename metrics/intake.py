"""Event intake: ``record_events`` validates a batch and stores it idempotently.

Used by ``POST /api/v1/events`` and by ``manage.py simulate_traffic`` alike. Per event: a bad
one is rejected with one sentence and does not sink the rest; an id already stored (per event
type) is a duplicate and changes nothing, also when two retries of one batch race, because the
insert is ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING`` on PostgreSQL
(rows sorted by id, so racing batches lock in one order and cannot deadlock). SQLite, which the
quick start uses, serialises writers and takes the portable path (read existing ids, then insert).

A response is priced at its ts (metrics.reference), its latency bucketed, its texts truncated.
A reaction gets its sentiment and a follow-up its correction flag from the admin-editable maps.
Reactions and follow-ups whose reply has not arrived are kept unattributed; the reply's arrival
attributes them. The touched (rollout, hour) buckets are marked dirty in the same transaction
and a rollup run is scheduled after the commit (metrics.tasks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from . import histogram, reference, rollups
from .events import Event, Invalid, event_id_of, validate_event
from .models import FollowupEvent, ReactionEvent, ResponseEvent

SQLITE_CHUNK = 400


@dataclass
class IntakeResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def record_events(
    events: list[Any], *, now: datetime | None = None, schedule: bool = True
) -> IntakeResult:
    """Validate and store a batch of events; see the module docstring. ``schedule=False`` leaves
    the rollup run to the caller (a backfill runs ``rollups.catch_up`` once at its end)."""
    now = now or datetime.now(UTC)
    result = IntakeResult()
    valid: dict[str, list[Event]] = {"response": [], "reaction": [], "followup": []}
    seen: dict[str, set[str]] = {kind: set() for kind in valid}
    for index, raw in enumerate(events):
        try:
            event = validate_event(raw, now)
        except Invalid as exc:
            result.rejected.append({"index": index, "id": event_id_of(raw), "error": str(exc)})
            continue
        if event.id in seen[event.type]:
            result.duplicates += 1
            continue
        seen[event.type].add(event.id)
        valid[event.type].append(event)
    total = sum(len(v) for v in valid.values())
    if total == 0:
        return result

    ref = reference.current()
    received = timezone.now()
    response_rows = [_response_row(e, ref, received) for e in sorted(valid["response"], key=lambda e: e.id)]
    reaction_events = sorted(valid["reaction"], key=lambda e: e.id)
    followup_events = sorted(valid["followup"], key=lambda e: e.id)

    postgres = rollups.is_postgres()
    with transaction.atomic():
        inserted_replies = (_insert_pg if postgres else _insert_portable)(
            ResponseEvent, response_rows, ("rollout_key", "hour", "message_id")
        )
        new_message_ids = [row[2] for row in inserted_replies]
        if new_message_ids:
            _attribute_waiting(new_message_ids, postgres)

        targets = {e.fields["message_id"] for e in reaction_events} | {
            e.fields["reply_to"] for e in followup_events
        }
        replies = _find_replies(sorted(targets), postgres) if targets else {}

        reaction_rows = [_reaction_row(e, ref, replies, received) for e in reaction_events]
        followup_rows = [_followup_row(e, ref, replies, received) for e in followup_events]
        inserted_reactions = (_insert_pg if postgres else _insert_portable)(
            ReactionEvent, reaction_rows, ("message_id",)
        )
        inserted_followups = (_insert_pg if postgres else _insert_portable)(
            FollowupEvent, followup_rows, ("reply_to",)
        )

        buckets = {(rk, hour) for rk, hour, _ in inserted_replies}
        for (target,) in [*inserted_reactions, *inserted_followups]:
            if target in replies:
                buckets.add(replies[target])
        rollups.lock_buckets_shared(buckets)
        rollups.mark_dirty(buckets)
        if buckets and schedule:
            from .tasks import schedule_rollups

            transaction.on_commit(schedule_rollups, robust=True)

    result.accepted = len(inserted_replies) + len(inserted_reactions) + len(inserted_followups)
    result.duplicates += total - result.accepted
    return result


def _response_row(event: Event, ref: reference.Reference, received: datetime) -> dict[str, Any]:
    f = event.fields
    cost, priced = ref.cost(f["model"], event.ts, f["input_tokens"], f["output_tokens"], f["cached_tokens"])
    return {
        "event_id": event.id,
        "ts": event.ts,
        "hour": rollups.hour_of(event.ts),
        "rollout_key": f["rollout_key"],
        "variant": f["variant"],
        "channel_id": event.channel_id,
        "message_id": f["message_id"],
        "conversation_id": f["conversation_id"],
        "model": f["model"],
        "input_tokens": f["input_tokens"],
        "output_tokens": f["output_tokens"],
        "cached_tokens": f["cached_tokens"],
        "cache_hit": f["cache_hit"],
        "latency_ms": f["latency_ms"],
        "latency_bucket": histogram.bucket_of(f["latency_ms"]),
        "error": f["error"],
        "cost_usd": cost,
        "unpriced": not priced,
        "user_text": f["user_text"],
        "response_text": f["response_text"],
        "received_at": received,
    }


def _reaction_row(event: Event, ref, replies, received) -> dict[str, Any]:
    f = event.fields
    return {
        "event_id": event.id,
        "ts": event.ts,
        "channel_id": event.channel_id,
        "message_id": f["message_id"],
        "user_id": f["user_id"],
        "emoji": f["emoji"],
        "action": f["action"],
        "sentiment": ref.sentiment_of(f["emoji"]),
        "attributed": f["message_id"] in replies,
        "received_at": received,
    }


def _followup_row(event: Event, ref, replies, received) -> dict[str, Any]:
    f = event.fields
    if f["is_correction"] is not None:
        is_correction, source = f["is_correction"], FollowupEvent.Source.CLIENT
    else:
        is_correction = ref.is_correction(f["text"])
        source = FollowupEvent.Source.PATTERN if is_correction else FollowupEvent.Source.NONE
    return {
        "event_id": event.id,
        "ts": event.ts,
        "channel_id": event.channel_id,
        "message_id": f["message_id"],
        "reply_to": f["reply_to"],
        "text": f["text"],
        "is_correction": is_correction,
        "correction_source": str(source),
        "attributed": f["reply_to"] in replies,
        "received_at": received,
    }


_PG_TYPES = {
    "CharField": "text",
    "TextField": "text",
    "DateTimeField": "timestamptz",
    "BigIntegerField": "bigint",
    "IntegerField": "integer",
    "SmallIntegerField": "smallint",
    "BooleanField": "boolean",
    "FloatField": "double precision",
    "DecimalField": "numeric",
}


def _insert_pg(model, rows: list[dict[str, Any]], returning: tuple[str, ...]) -> list[tuple]:
    """The rows that were new, via COPY (binary) into a session temp table emptied at commit,
    then ``INSERT ... SELECT ... ORDER BY event_id ON CONFLICT DO NOTHING RETURNING``. Any
    unique constraint (the event id; a response's message id) makes a row a duplicate; the
    ORDER BY makes racing batches take their row locks in one order (no deadlock)."""
    if not rows:
        return []
    columns = list(rows[0])
    fields = {f.attname: f for f in model._meta.concrete_fields}
    types = [_PG_TYPES[fields[c].get_internal_type()] for c in columns]
    table = model._meta.db_table
    staging = f"staging_{table}"
    column_list = ", ".join(columns)
    with _raw_cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS "
            f"AS SELECT {column_list} FROM {table} WITH NO DATA"
        )
        with cursor.copy(f"COPY {staging} ({column_list}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row([row[c] for c in columns])
        cursor.execute(
            f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {staging} "
            f"ORDER BY event_id ON CONFLICT DO NOTHING RETURNING {', '.join(returning)}"
        )
        inserted = cursor.fetchall()
        cursor.execute(f"DELETE FROM {staging}")  # for a caller whose transaction goes on
    return inserted


def _raw_cursor():
    """A psycopg cursor with server-side binding and binary parameters on Django's connection
    (in its transaction): Django's default client-side binding quotes every array element in
    Python, which costs more than the insert itself for 1000-row arrays."""
    import psycopg

    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _attribute_waiting(message_ids: list[str], postgres: bool) -> None:
    """Reactions and follow-ups that were waiting for these replies are now attributed."""
    if postgres:
        with _raw_cursor() as cursor:
            cursor.execute(
                "UPDATE metrics_reactionevent SET attributed = true "
                "WHERE message_id = ANY(%s::text[]) AND NOT attributed",
                [message_ids],
            )
            cursor.execute(
                "UPDATE metrics_followupevent SET attributed = true "
                "WHERE reply_to = ANY(%s::text[]) AND NOT attributed",
                [message_ids],
            )
        return
    for start in range(0, len(message_ids), SQLITE_CHUNK):
        chunk = message_ids[start : start + SQLITE_CHUNK]
        ReactionEvent.objects.filter(message_id__in=chunk, attributed=False).update(attributed=True)
        FollowupEvent.objects.filter(reply_to__in=chunk, attributed=False).update(attributed=True)


def _find_replies(message_ids: list[str], postgres: bool) -> dict[str, tuple[str, datetime]]:
    """{message_id: (rollout_key, hour)} of the replies among message_ids that are stored."""
    if postgres:
        with _raw_cursor() as cursor:
            cursor.execute(
                "SELECT message_id, rollout_key, hour FROM metrics_responseevent "
                "WHERE message_id = ANY(%s::text[])",
                [message_ids],
            )
            return {m: (r, h) for m, r, h in cursor.fetchall()}
    found: dict[str, tuple[str, datetime]] = {}
    for start in range(0, len(message_ids), SQLITE_CHUNK):
        for m, r, h in ResponseEvent.objects.filter(
            message_id__in=message_ids[start : start + SQLITE_CHUNK]
        ).values_list("message_id", "rollout_key", "hour"):
            found[m] = (r, h)
    return found


def _insert_portable(model, rows: list[dict[str, Any]], returning: tuple[str, ...]) -> list[tuple]:
    """SQLite: writers are serialised (BEGIN IMMEDIATE), so reading the existing keys first and
    inserting the rest inside one transaction is race-free."""
    if not rows:
        return []
    unique = ["event_id"] + (["message_id"] if model is ResponseEvent else [])
    taken: dict[str, set[str]] = {name: set() for name in unique}
    for name in unique:
        values = [row[name] for row in rows]
        for start in range(0, len(values), SQLITE_CHUNK):
            taken[name].update(
                model.objects.filter(**{f"{name}__in": values[start : start + SQLITE_CHUNK]})
                .values_list(name, flat=True)
            )
    fresh = []
    for row in rows:
        if any(row[name] in taken[name] for name in unique):
            continue
        for name in unique:
            taken[name].add(row[name])
        fresh.append(row)
    model.objects.bulk_create([model(**row) for row in fresh], batch_size=SQLITE_CHUNK)
    return [tuple(row[name] for name in returning) for row in fresh]
