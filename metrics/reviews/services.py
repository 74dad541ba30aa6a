"""Human review of replies: drawing samples, holding items, saving grades, and the figures.

Writes (services, keyword-only ``actor=``):

* ``draw_sample`` draws a week's sample by metrics.reviews.sampling's rule and records it (seed,
  window, cut-off, allocation) with an audit row in the same transaction. ``kind=scheduled`` is
  idempotent: the weekly beat entry gets the existing sample back. Draws of one rollout are
  serialised (an advisory lock on PostgreSQL), and a reply can be in one sample only (unique).
* ``next_item`` gives a reviewer the item they hold, or holds the next one for them. A hold is
  a lease (``SELCONTROL_REVIEW_LEASE_SECONDS``) taken by a conditional UPDATE: only if the item
  is free or its lease ran out. Two reviewers asking at once never get the same item.
  ``renew_hold`` (the page's heartbeat) and ``release_hold`` (leaving the page) go with it.
* ``save_draft`` keeps a half-done rubric; ``submit_grade`` saves the grade. Both only for the
  item the queue gave the reviewer (they hold it), never for any other item id. A saved grade is
  final: saving it shows the version, so a second save with other values is refused (409);
  the same values again are an idempotent retry.

Reads: ``weekly_review_rates`` and ``review_counts`` (the summary API and the dashboard),
``sample_progress``, ``sample_agreement`` (Cohen's kappa), ``graded_replies`` (results list).
Rates use each item's first saved grade; the second grade of a double-graded item only feeds
the agreement figures.
"""

from __future__ import annotations

import secrets
import zlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.db.models.lookups import GreaterThan
from django.utils import timezone

from ..models import ReactionEvent, ResponseEvent
from . import sampling as review_sampling
from .models import ReviewGrade, ReviewItem, ReviewSample

CONTEXT_MESSAGES = 3  # earlier exchanges of the conversation shown above the reply


class ReviewError(Exception):
    """A review action that cannot be done; the message is one sentence for the reviewer.
    ``errors``: an incomplete rubric's sentence per field (empty for every other refusal)."""

    status = 422

    def __init__(self, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


class HeldByOther(ReviewError):
    status = 409


class AlreadyGraded(ReviewError):
    status = 409


class NotYours(ReviewError):
    """The item is not the one the queue gave this reviewer (they do not hold it)."""

    status = 409


class GradeFinal(ReviewError):
    """The reviewer saved a grade of the item and was shown its version: it cannot change."""

    status = 409


class SampleExists(ReviewError):
    """The week already has a sample; a second one is drawn only when asked for explicitly."""

    status = 409

    def __init__(self, message: str, sample: ReviewSample) -> None:
        super().__init__(message)
        self.sample = sample


def sample_size_default() -> int:
    return int(settings.SELCONTROL_REVIEW_SAMPLE_SIZE)


def double_share_default() -> float:
    return float(settings.SELCONTROL_REVIEW_DOUBLE_SHARE)


def lease() -> timedelta:
    return timedelta(seconds=int(settings.SELCONTROL_REVIEW_LEASE_SECONDS))


# --- weeks -------------------------------------------------------------------------------------


def week_start_of(moment: datetime | date) -> date:
    day = moment.astimezone(UTC).date() if isinstance(moment, datetime) else moment
    return day - timedelta(days=day.weekday())


def week_bounds(week_start: date) -> tuple[datetime, datetime]:
    since = datetime.combine(week_start, time(0), tzinfo=UTC)
    return since, since + timedelta(days=7)


def previous_week(now: datetime | None = None) -> date:
    return week_start_of(now or timezone.now()) - timedelta(days=7)


EARLIEST_WEEK = date(2000, 1, 3)  # a Monday; nothing the bot sent is older


def parse_week(value: str, *, name: str = "week", now: datetime | None = None) -> date:
    """The Monday of the week holding ``value`` (any day, YYYY-MM-DD). Raises ReviewError with
    one sentence for what is not a date, a week before 2000, or a week that has not started
    (no reply was sent in it; this also keeps every week's end a time the stack can hold)."""
    text = str(value).strip()
    if "\x00" in text:
        raise ReviewError(f"{name} must be a date (YYYY-MM-DD); it contains a NUL character.")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ReviewError(
            f"{name} must be a date (YYYY-MM-DD), any day of the week; got {text[:40]!r}."
        ) from None
    week = week_start_of(day)
    if week < EARLIEST_WEEK:
        raise ReviewError(f"{name} must be in 2000 or later; got {day.isoformat()}.")
    if week > week_start_of(now or timezone.now()):
        raise ReviewError(
            f"The week of {week:%-d %b %Y} has not started yet: no reply was sent in it."
        )
    return week


# --- drawing samples ---------------------------------------------------------------------------


def _candidates(
    rollout_key: str, since: datetime, until: datetime, cutoff: datetime, before_sample: int | None
) -> list[review_sampling.Candidate]:
    taken = ReviewItem.objects.filter(response=OuterRef("pk"))
    if before_sample is not None:
        taken = taken.filter(sample_id__lt=before_sample)
    rows = (
        ResponseEvent.objects.filter(
            rollout_key=rollout_key, ts__gte=since, ts__lt=until, received_at__lte=cutoff
        )
        .exclude(response_text="")
        .filter(error__isnull=True)
        .filter(~Exists(taken))
        .values_list("id", "variant", "ts", "channel_id")
    )
    return [
        review_sampling.Candidate(
            id=pk, variant=variant, day=ts.astimezone(UTC).date(), channel_id=channel
        )
        for pk, variant, ts, channel in rows
    ]


def _lock_draws(rollout_key: str) -> None:
    """Serialise draws of one rollout (a transaction-scoped advisory lock on PostgreSQL; SQLite
    serialises writers anyway)."""
    if connection.vendor == "postgresql":
        key = (7207 << 32) | zlib.crc32(rollout_key.encode())
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s::bigint)", [key])


def draw_sample(
    *,
    rollout_key: str,
    week_start: date,
    actor,
    reason: str = "",
    size: int | None = None,
    double_share: float | None = None,
    seed: int | None = None,
    kind: str = ReviewSample.Kind.ON_DEMAND,
    origin: str = ReviewSample.Origin.CONSOLE,
    additional: bool = False,
    now: datetime | None = None,
) -> ReviewSample:
    """Draw and record a sample of the week starting ``week_start`` (a Monday, UTC).

    One sample per rollout and week: a scheduled draw gets the week's existing sample back
    (idempotent), an on-demand draw of a week that has one raises SampleExists (409) naming it,
    unless ``additional`` is set (with a reason: it is audited); an additional sample never
    repeats a reply of the earlier ones."""
    size = sample_size_default() if size is None else size
    double_share = double_share_default() if double_share is None else double_share
    now = now or timezone.now()
    if week_start.weekday() != 0:
        raise ReviewError(
            f"week_start must be a Monday; {week_start.isoformat()} is a {week_start:%A}."
        )
    if week_start > week_start_of(now):
        raise ReviewError(
            f"The week of {week_start:%-d %b %Y} has not started yet: no reply was sent in it."
        )
    if not 1 <= size <= 1000:
        raise ReviewError(f"size must be between 1 and 1000; got {size}.")
    if not 0.0 <= double_share <= 1.0:
        raise ReviewError(f"double_share must be between 0 and 1; got {double_share}.")
    if additional and not reason.strip():
        raise ReviewError(
            "Say why you draw an additional sample of the week (the reason is kept in the audit "
            "log)."
        )
    since, until = week_bounds(week_start)
    seed = secrets.randbits(48) if seed is None else seed
    with transaction.atomic():
        _lock_draws(rollout_key)
        existing = _existing_sample(rollout_key, week_start, kind)
        if existing is not None and kind == ReviewSample.Kind.SCHEDULED:
            return existing
        if existing is not None and not additional:
            raise SampleExists(_exists_sentence(existing), existing)
        outcome = review_sampling.draw(
            _candidates(rollout_key, since, until, now, None), size, seed, double_share
        )
        sample = ReviewSample.objects.create(
            rollout_key=rollout_key,
            week_start=week_start,
            since=since,
            until=until,
            cutoff=now,
            kind=kind,
            origin=origin,
            rule=review_sampling.RULE,
            seed=seed,
            requested=size,
            drawn=len(outcome.ids),
            shortfall=outcome.shortfall,
            double_share=double_share,
            allocation=outcome.allocation,
            created_by=actor.name,
            created_at=now,
        )
        ReviewItem.objects.bulk_create(
            ReviewItem(
                sample=sample,
                response_id=pk,
                position=index + 1,
                grades_needed=2 if pk in outcome.double else 1,
            )
            for index, pk in enumerate(outcome.ids)
        )
        _audit_draw(sample, actor, reason)
    return sample


def _existing_sample(rollout_key: str, week_start: date, kind: str) -> ReviewSample | None:
    """The week's sample a new draw would duplicate. For the weekly (scheduled) draw: the
    scheduled one, else one drawn after the week had ended (it saw the whole week). For an
    on-demand draw: any sample of the week, the first drawn."""
    samples = ReviewSample.objects.filter(rollout_key=rollout_key, week_start=week_start)
    if kind == ReviewSample.Kind.SCHEDULED:
        _since, until = week_bounds(week_start)
        return (
            samples.filter(kind=kind).first()
            or samples.filter(cutoff__gte=until).order_by("id").first()
        )
    return samples.order_by("id").first()


def _exists_sentence(sample: ReviewSample) -> str:
    progress = sample_progress(sample)
    return (
        f"The week of {sample.week_start:%-d %b %Y} already has sample {sample.pk} "
        f"({sample.drawn} replies, {progress['graded']} graded), drawn by {sample.created_by} on "
        f"{sample.created_at:%-d %b %Y}. Open it; draw an additional sample of that week (with a "
        "reason) only if you need more replies."
    )


def _audit_draw(sample: ReviewSample, actor, reason: str) -> None:
    from rollout.models import AuditEntry, Rollout
    from rollout.services import record_audit

    record_audit(
        Rollout.objects.filter(key=sample.rollout_key).first(),
        AuditEntry.Action.REVIEW_SAMPLE,
        actor,
        reason or f"Review sample of the week of {sample.week_start.isoformat()}",
        {},
        {
            "sample": sample.pk,
            "week_start": sample.week_start.isoformat(),
            "kind": sample.kind,
            "origin": sample.origin,
            "rule": sample.rule,
            "seed": sample.seed,
            "requested": sample.requested,
            "drawn": sample.drawn,
            "shortfall": sample.shortfall,
            "double_share": sample.double_share,
            "cutoff": sample.cutoff.isoformat(),
        },
        revision=None,
    )


def reproduce(sample: ReviewSample) -> list[int]:
    """The response ids, in queue order, that the recorded rule, seed, window and cut-off give
    today (replies in earlier samples excluded, as they were). Equal to the sample's items
    unless the raw events were changed since."""
    candidates = _candidates(
        sample.rollout_key, sample.since, sample.until, sample.cutoff, sample.pk
    )
    return review_sampling.draw(candidates, sample.requested, sample.seed, sample.double_share).ids


def sample_response_ids(sample: ReviewSample) -> list[int]:
    return list(sample.items.order_by("position").values_list("response_id", flat=True))


def draw_scheduled_samples(*, now: datetime | None = None) -> list[ReviewSample]:
    """The beat's job: last week's sample for every rollout that had replies, if none yet."""
    from rollout.models import Rollout
    from rollout.services import Actor

    now = now or timezone.now()
    week = previous_week(now)
    since, until = week_bounds(week)
    keys = set(Rollout.objects.values_list("key", flat=True))
    keys |= set(
        ResponseEvent.objects.filter(ts__gte=since, ts__lt=until)
        .values_list("rollout_key", flat=True)
        .distinct()
    )
    samples = []
    for key in sorted(keys):
        if not ResponseEvent.objects.filter(rollout_key=key, ts__gte=since, ts__lt=until).exists():
            continue
        samples.append(
            draw_sample(
                rollout_key=key,
                week_start=week,
                kind=ReviewSample.Kind.SCHEDULED,
                origin=ReviewSample.Origin.BEAT,
                actor=Actor("celery-beat", via="system"),
                reason="Weekly review sample",
                now=now,
            )
        )
    return samples


# --- holds -------------------------------------------------------------------------------------


def _still_open(reviewer) -> list:
    """Filter conditions: the item still needs a grade, and not from a reviewer who saved one.
    Usable in the conditional UPDATE of ``_claim`` (no joins, no aggregates)."""
    saved = (
        ReviewGrade.objects.filter(item=OuterRef("pk"), submitted_at__isnull=False)
        .values("item")
        .annotate(n=Count("id"))
        .values("n")
    )
    mine = ReviewGrade.objects.filter(
        item=OuterRef("pk"), reviewer=reviewer, submitted_at__isnull=False
    )
    return [
        GreaterThan(F("grades_needed"), Coalesce(Subquery(saved, output_field=IntegerField()), 0)),
        ~Exists(mine),
    ]


def _open_items(sample: ReviewSample, reviewer) -> QuerySet[ReviewItem]:
    """Items of the sample that still need a grade and that this reviewer has not saved."""
    return sample.items.filter(*_still_open(reviewer))


def _claim(item_id: int, reviewer, now: datetime, *, token: str = "") -> str | None:
    """Hold the item if it still needs a grade from this reviewer and it is free, its lease ran
    out, or the reviewer holds it already: one conditional UPDATE, so of two reviewers asking at
    once exactly one gets it."""
    token = token or secrets.token_hex(8)
    got = (
        ReviewItem.objects.filter(pk=item_id)
        .filter(Q(held_by__isnull=True) | Q(held_until__lte=now) | Q(held_by=reviewer))
        .filter(*_still_open(reviewer))
        .update(held_by=reviewer, held_until=now + lease(), hold_token=token)
    )
    return token if got else None


def _queue_candidates(sample: ReviewSample, reviewer, now: datetime) -> list[int]:
    """Item ids in the order the queue offers them to this reviewer: the one they hold, then
    free ones they left a draft on, then free ones in queue order (shuffled at the draw)."""
    open_items = _open_items(sample, reviewer)
    mine = open_items.filter(held_by=reviewer, held_until__gt=now).order_by("position").first()
    candidates = [mine.pk] if mine else []
    drafted = Exists(ReviewGrade.objects.filter(item=OuterRef("pk"), reviewer=reviewer))
    candidates += list(
        open_items.filter(Q(held_by__isnull=True) | Q(held_until__lte=now))
        .annotate(drafted=drafted)
        .order_by("-drafted", "position")
        .values_list("pk", flat=True)[:50]
    )
    return candidates


def next_item_id(sample: ReviewSample, reviewer, *, now: datetime | None = None) -> int | None:
    """The id of the item the queue would give this reviewer now (None when nothing is left)."""
    candidates = _queue_candidates(sample, reviewer, now or timezone.now())
    return candidates[0] if candidates else None


def next_item(sample: ReviewSample, reviewer, *, now: datetime | None = None) -> ReviewItem | None:
    """The item this reviewer holds in the sample (lease renewed), else the next free one, held
    for them: ones they left a draft on first, then queue order. None when nothing is left."""
    now = now or timezone.now()
    for pk in _queue_candidates(sample, reviewer, now):
        token = _claim(pk, reviewer, now)
        if token:
            # one hold at a time: let go of anything else this reviewer held in the sample
            sample.items.filter(held_by=reviewer).exclude(pk=pk).update(
                held_by=None, held_until=None, hold_token=""
            )
            return ReviewItem.objects.select_related("response", "sample").get(pk=pk)
    return None


def renew_hold(item: ReviewItem, reviewer, *, token: str = "", now: datetime | None = None) -> bool:
    """Extend the reviewer's lease (the open page's heartbeat); False if they do not hold it.

    A hold is renewed, never taken here: an item id nobody gave this reviewer stays free. The
    one exception is the page coming back (the browser's back-forward cache) after its release
    beacon: the item is taken again, with the page's token, when it is free and is the very
    item the queue would give this reviewer next."""
    now = now or timezone.now()
    if ReviewItem.objects.filter(pk=item.pk, held_by=reviewer).update(held_until=now + lease()):
        return True
    if not token or next_item_id(item.sample, reviewer, now=now) != item.pk:
        return False
    return bool(_claim(item.pk, reviewer, now, token=token))


def release_hold(item: ReviewItem, reviewer, *, token: str = "") -> bool:
    """Let go of the item (the reviewer moved on or left). With ``token``, only the page view
    that holds it now can release it, so a late beacon from a reloaded page does nothing."""
    held = ReviewItem.objects.filter(pk=item.pk, held_by=reviewer)
    if token:
        held = held.filter(hold_token=token)
    return bool(held.update(held_by=None, held_until=None, hold_token=""))


# --- grades ------------------------------------------------------------------------------------

CHOICES = {
    "hallucination": [c.value for c in ReviewGrade.Hallucination],
    "format": [c.value for c in ReviewGrade.Format],
    "uncertainty": [c.value for c in ReviewGrade.Uncertainty],
    "consistent": ["yes", "no"],
    "sounds_like_sel": ["1", "2", "3", "4", "5"],
}
LABELS = {
    "hallucination": "Hallucination",
    "format": "Format compliance",
    "uncertainty": "Uncertainty",
    "consistent": "Consistent with the conversation",
    "sounds_like_sel": "Sounds like Sel",
}
NOTE_LIMIT = 4000


def clean_grade(data: Mapping[str, Any], *, final: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """Rubric values from a form (pure). Final: every grade required, and a note saying what was
    wrong when there is a hallucination. Draft: whatever valid values there are."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, allowed in CHOICES.items():
        raw = str(data.get(name) or "").strip()
        if not raw:
            if final:
                errors[name] = f"{LABELS[name]} is required."
            continue
        if raw not in allowed:
            errors[name] = f"{LABELS[name]} must be one of {', '.join(allowed)}; got {raw[:20]!r}."
            continue
        if name == "consistent":
            values[name] = raw == "yes"
        elif name == "sounds_like_sel":
            values[name] = int(raw)
        else:
            values[name] = raw
    for name in ("hallucination_note", "note"):
        text = str(data.get(name) or "").replace("\x00", "").strip()
        if len(text) > NOTE_LIMIT:
            errors[name] = (
                f"{name.replace('_', ' ').capitalize()} is {len(text)} characters long; "
                f"the limit is {NOTE_LIMIT}."
            )
        values[name] = text[:NOTE_LIMIT]
    if (
        final
        and values.get("hallucination") in ("minor", "major")
        and not values["hallucination_note"]
    ):
        errors["hallucination_note"] = (
            "Say what was wrong in the hallucination note (minor or major)."
        )
    return values, errors


def grade_form_values(grade: ReviewGrade | None) -> dict[str, str]:
    """A grade as the form's string values (for redisplaying a draft)."""
    if grade is None:
        return {}
    out = {
        "hallucination": grade.hallucination,
        "format": grade.format,
        "uncertainty": grade.uncertainty,
        "consistent": "" if grade.consistent is None else ("yes" if grade.consistent else "no"),
        "sounds_like_sel": str(grade.sounds_like_sel or ""),
        "hallucination_note": grade.hallucination_note,
        "note": grade.note,
    }
    return out


def save_draft(
    item: ReviewItem, reviewer, data: Mapping[str, Any], *, now: datetime | None = None
) -> ReviewGrade | None:
    """Keep a half-done rubric (reload shows it). Only for the item this reviewer holds (None
    otherwise: another reviewer holds it, or the queue never gave it to them); does nothing
    once their grade is saved."""
    now = now or timezone.now()
    values, _ = clean_grade(data, final=False)
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().get(pk=item.pk)
        if locked.held_by_id != reviewer.pk:
            return None
        grade, created = ReviewGrade.objects.get_or_create(
            item=locked,
            reviewer=reviewer,
            defaults={**values, "created_at": now, "updated_at": now},
        )
        if grade.submitted_at is not None:
            return grade
        if not created:
            for name, value in values.items():
                setattr(grade, name, value)
            grade.updated_at = now
            grade.save()
        return grade


@dataclass
class Saved:
    grade: ReviewGrade
    changed: bool


def submit_grade(
    item: ReviewItem, reviewer, data: Mapping[str, Any], *, now: datetime | None = None
) -> Saved:
    """Save the reviewer's grade of the item the queue gave them, and release it.

    Blind review: the version is shown once the grade is saved, so a saved grade is final.
    Raises NotYours (409) for an item this reviewer does not hold (an item id they were never
    given, or one whose lease another reviewer took: HeldByOther), GradeFinal (409) for a
    second save with other values (the same values again are an idempotent retry:
    ``changed`` False), AlreadyGraded (409) when the item has all its grades, and ReviewError
    (422, with ``errors``) on an incomplete rubric. Nothing is written unless it succeeds."""
    now = now or timezone.now()
    values, errors = clean_grade(data, final=True)
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().get(pk=item.pk)
        grade = ReviewGrade.objects.filter(item=locked, reviewer=reviewer).first()
        if grade is not None and grade.submitted_at is not None:
            if not errors and all(getattr(grade, k) == v for k, v in values.items()):
                return Saved(grade=grade, changed=False)
            raise GradeFinal(
                f"Your grade of this reply was saved at {grade.submitted_at:%H:%M} UTC on "
                f"{grade.submitted_at:%-d %b} and is final: saving it showed you the version, "
                "so it cannot be changed."
            )
        if locked.held_by_id != reviewer.pk:
            if locked.held_by_id is not None and locked.held_until and locked.held_until > now:
                raise HeldByOther("Another reviewer holds this reply now; your draft is kept.")
            raise NotYours(
                "You can only grade the reply the queue gives you; open the sample's queue."
            )
        if errors:
            raise ReviewError(next(iter(errors.values())), errors)
        saved = locked.grades.filter(submitted_at__isnull=False).count()
        if saved >= locked.grades_needed:
            raise AlreadyGraded("This reply has all the grades it needs already.")
        if grade is None:
            grade = ReviewGrade(item=locked, reviewer=reviewer, created_at=now)
        for name, value in values.items():
            setattr(grade, name, value)
        grade.updated_at = now
        grade.submitted_at = now
        grade.save()
        ReviewItem.objects.filter(pk=locked.pk).update(held_by=None, held_until=None, hold_token="")
    return Saved(grade=grade, changed=True)


# --- what a reviewer sees ----------------------------------------------------------------------


def conversation_before(
    response: ResponseEvent, limit: int = CONTEXT_MESSAGES
) -> list[ResponseEvent]:
    """The few earlier exchanges of the same conversation, oldest first (when the bot sent a
    conversation id)."""
    if not response.conversation_id:
        return []
    earlier = (
        ResponseEvent.objects.filter(
            rollout_key=response.rollout_key,
            conversation_id=response.conversation_id,
            ts__lt=response.ts,
        )
        .order_by("-ts")
        .only("ts", "user_text", "response_text")[:limit]
    )
    return list(reversed(earlier))


def sample_progress(sample: ReviewSample, reviewer=None) -> dict[str, Any]:
    items = sample.items.annotate(
        saved=Count("grades", filter=Q(grades__submitted_at__isnull=False))
    )
    total = 0
    graded = 0
    double_total = 0
    double_done = 0
    complete = 0
    for needed, saved in items.values_list("grades_needed", "saved"):
        total += 1
        graded += saved >= 1
        complete += saved >= needed
        if needed >= 2:
            double_total += 1
            double_done += saved >= 2
    out = {
        "total": total,
        "graded": graded,
        "complete": complete,
        "double_total": double_total,
        "double_done": double_done,
        "done": total > 0 and complete == total,
        "percent": int(100 * graded / total) if total else 0,
    }
    if reviewer is not None:
        out["mine"] = ReviewGrade.objects.filter(
            item__sample=sample, reviewer=reviewer, submitted_at__isnull=False
        ).count()
    return out


def sample_agreement(sample: ReviewSample) -> dict[str, Any]:
    """Cohen's kappa between the first two saved grades of each double-graded item: on the
    hallucination grade (none/minor/major), on hallucination yes/no, and on format."""
    by_item: dict[int, list[ReviewGrade]] = defaultdict(list)
    for grade in ReviewGrade.objects.filter(
        item__sample=sample, submitted_at__isnull=False
    ).order_by("submitted_at", "id"):
        by_item[grade.item_id].append(grade)
    pairs = [(g[0], g[1]) for g in by_item.values() if len(g) >= 2]
    out: dict[str, Any] = {"pairs": len(pairs)}
    measures = {
        "hallucination": lambda g: g.hallucination,
        "hallucination_any": lambda g: g.hallucination != "none",
        "format": lambda g: g.format,
    }
    for name, key in measures.items():
        kappa = review_sampling.cohen_kappa([(key(a), key(b)) for a, b in pairs])
        agree = sum(1 for a, b in pairs if key(a) == key(b))
        out[name] = {
            "kappa": None if kappa is None else round(kappa, 3),
            "label": review_sampling.kappa_label(kappa)
            if kappa is not None or not pairs
            else "not defined: every grade in one category",
            "agreement": round(agree / len(pairs), 3) if pairs else None,
        }
    return out


# --- figures -----------------------------------------------------------------------------------


def _primary_grades(rollout_key: str, since: datetime, until: datetime) -> list[Mapping[str, Any]]:
    """The first saved grade of each reviewed reply sent in [since, until)."""
    rows = (
        ReviewGrade.objects.filter(
            submitted_at__isnull=False,
            item__response__rollout_key=rollout_key,
            item__response__ts__gte=since,
            item__response__ts__lt=until,
        )
        .order_by("item_id", "submitted_at", "id")
        .values(
            "item_id",
            "hallucination",
            "format",
            "uncertainty",
            "consistent",
            "sounds_like_sel",
            variant=F("item__response__variant"),
            ts=F("item__response__ts"),
        )
    )
    first: dict[int, Mapping[str, Any]] = {}
    for row in rows:
        first.setdefault(row["item_id"], row)
    return list(first.values())


def weekly_review_rates(rollout_key: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """One row per (week, variant) of replies sent in [since, until) that were graded, ordered
    by week then variant: ``week`` (Monday, a date), ``variant``, ``graded``, ``hallucinations``
    (minor + major), ``minor``, ``major``, ``format_followed``, ``format_applicable``,
    ``uncertainty_ok``, ``uncertainty_applicable``, ``consistent``, ``consistency_graded``,
    ``sel_sum``, ``sel_graded``, and ``hallucination_rate`` with its 95% Wilson interval
    ``hallucination_ci`` [low, high] (None without grades)."""
    table: dict[tuple[date, str], dict[str, Any]] = {}
    for g in _primary_grades(rollout_key, since, until):
        key = (week_start_of(g["ts"]), g["variant"])
        row = table.setdefault(
            key,
            {
                "week": key[0],
                "variant": key[1],
                **dict.fromkeys(
                    (
                        "graded",
                        "hallucinations",
                        "minor",
                        "major",
                        "format_followed",
                        "format_applicable",
                        "uncertainty_ok",
                        "uncertainty_applicable",
                        "consistent",
                        "consistency_graded",
                        "sel_sum",
                        "sel_graded",
                    ),
                    0,
                ),
            },
        )
        row["graded"] += 1
        row["minor"] += g["hallucination"] == "minor"
        row["major"] += g["hallucination"] == "major"
        row["hallucinations"] += g["hallucination"] in ("minor", "major")
        if g["format"] != "na":
            row["format_applicable"] += 1
            row["format_followed"] += g["format"] == "followed"
        if g["uncertainty"] != "na":
            row["uncertainty_applicable"] += 1
            row["uncertainty_ok"] += g["uncertainty"] == "appropriate"
        if g["consistent"] is not None:
            row["consistency_graded"] += 1
            row["consistent"] += bool(g["consistent"])
        if g["sounds_like_sel"]:
            row["sel_graded"] += 1
            row["sel_sum"] += g["sounds_like_sel"]
    rows = [table[key] for key in sorted(table)]
    for row in rows:
        n = row["graded"]
        row["hallucination_rate"] = row["hallucinations"] / n if n else None
        ci = review_sampling.wilson_interval(row["hallucinations"], n)
        row["hallucination_ci"] = list(ci) if ci else None
    return rows


def dashboard_weekly(rollout_key: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """weekly_review_rates in the dashboard's vocabulary
    (metrics.dashboard.series.REVIEW_METRICS)."""
    rows = []
    for row in weekly_review_rates(rollout_key, since, until):
        out = dict(row)
        out["week"] = datetime.combine(row["week"], time(0), tzinfo=UTC)
        out["format_ok"] = row["format_followed"]
        out["calibrated"] = row["uncertainty_ok"]
        rows.append(out)
    return rows


def review_counts(rollout_key: str, since: datetime, until: datetime) -> dict[str, dict[str, int]]:
    """{variant: {"graded", "hallucinations"}} over replies sent in [since, until)."""
    out: dict[str, dict[str, int]] = {}
    for g in _primary_grades(rollout_key, since, until):
        figures = out.setdefault(g["variant"], {"graded": 0, "hallucinations": 0})
        figures["graded"] += 1
        figures["hallucinations"] += g["hallucination"] in ("minor", "major")
    return out


def graded_replies(filters: Mapping[str, Any]) -> QuerySet[ReviewGrade]:
    """Saved grades with their reply, for the results list. Filters (all optional): rollout,
    variant, hallucination, format, uncertainty, consistent ("yes"/"no"), reviewer (user name),
    week (a Monday), sample (id), q (text in the reply, the user's message or the notes);
    order: "recent" (default), "upvoted", "downvoted", "sel_low"."""
    up = _reaction_count(1)
    down = _reaction_count(-1)
    qs = (
        ReviewGrade.objects.filter(submitted_at__isnull=False)
        .select_related("item__response", "item__sample", "reviewer")
        .annotate(upvotes=Coalesce(up, 0), downvotes=Coalesce(down, 0))
    )
    if filters.get("rollout"):
        qs = qs.filter(item__response__rollout_key=filters["rollout"])
    for name, field in (
        ("variant", "item__response__variant"),
        ("hallucination", "hallucination"),
        ("format", "format"),
        ("uncertainty", "uncertainty"),
    ):
        if filters.get(name):
            qs = qs.filter(**{field: filters[name]})
    if filters.get("consistent") in ("yes", "no"):
        qs = qs.filter(consistent=filters["consistent"] == "yes")
    if filters.get("reviewer"):
        qs = qs.filter(reviewer__username=filters["reviewer"])
    if filters.get("week"):
        since, until = week_bounds(filters["week"])
        qs = qs.filter(item__response__ts__gte=since, item__response__ts__lt=until)
    if filters.get("sample"):
        qs = qs.filter(item__sample_id=filters["sample"])
    if filters.get("q"):
        text = filters["q"]
        qs = qs.filter(
            Q(item__response__response_text__icontains=text)
            | Q(item__response__user_text__icontains=text)
            | Q(hallucination_note__icontains=text)
            | Q(note__icontains=text)
        )
    order = {
        "upvoted": ["-upvotes", "downvotes", "-submitted_at"],
        "downvoted": ["-downvotes", "upvotes", "-submitted_at"],
        "sel_low": ["sounds_like_sel", "-submitted_at"],
    }.get(filters.get("order") or "", ["-submitted_at", "-id"])
    return qs.order_by(*order)


def _reaction_count(sentiment: int) -> Subquery:
    """Users' reactions of one sentiment on the graded reply: adds minus removes."""
    counts = (
        ReactionEvent.objects.filter(
            message_id=OuterRef("item__response__message_id"), sentiment=sentiment
        )
        .values("message_id")
        .annotate(n=Count("id", filter=Q(action="add")) - Count("id", filter=Q(action="remove")))
        .values("n")
    )
    return Subquery(counts, output_field=IntegerField())
