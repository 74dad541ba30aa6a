"""Review pages: samples, the one-reply-at-a-time queue, and the results list.

Reviewers and operators draw samples and grade (rollout.roles.reviewer_required); viewers see
the results list only (the "Reviews" link takes them there). The queue never puts the reply's
variant (nor its channel id, model or send time, which would give it away) in the page until
the grade is saved; the saved fragment then shows it, and the grade is final. Nothing else
shows a reply's version or others' grades to a grader it is still open to
(metrics.reviews.blinding). Status codes of the grading posts: 200 saved, 409 not the reviewer's
reply (never given to them, held by another, already fully graded, or their grade is final:
a sentence, not the reply), 422 incomplete rubric (the form comes back with the errors).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from rollout.roles import is_reviewer, reviewer_required
from rollout.services import Actor
from selcontrol.http import HtmxHttpRequest

from . import blinding as review_blinding
from . import services as reviews
from .forms import DrawForm, HoldForm, ResultFilterForm
from .models import ReviewGrade, ReviewItem, ReviewSample

PAGE_SIZE = 50
RATE_WEEKS = 12  # weeks of rates shown above the results list

# The rubric as the queue shows it: field, shortcut prefix, legend, (value, label, key) options.
RUBRIC = (
    (
        "hallucination",
        "h",
        "Hallucination",
        (("none", "None", "1"), ("minor", "Minor", "2"), ("major", "Major", "3")),
    ),
    (
        "format",
        "f",
        "Format compliance",
        (("followed", "Followed", "1"), ("not_followed", "Not followed", "2"), ("na", "N/A", "3")),
    ),
    (
        "uncertainty",
        "u",
        "Uncertainty",
        (
            ("appropriate", "Appropriate", "1"),
            ("overconfident", "Overconfident", "2"),
            ("overcautious", "Overcautious", "3"),
            ("na", "N/A", "4"),
        ),
    ),
    (
        "consistent",
        "c",
        "Consistent with the conversation",
        (("yes", "Yes", "1"), ("no", "No", "2")),
    ),
    (
        "sounds_like_sel",
        "s",
        "Sounds like Sel",
        tuple((str(n), str(n), str(n)) for n in range(1, 6)),
    ),
)


def rubric(values: dict, errors: dict) -> list[dict]:
    return [
        {
            "name": name,
            "prefix": prefix,
            "legend": legend,
            "error": errors.get(name, ""),
            "options": [
                {"value": v, "label": label, "key": key, "checked": str(values.get(name, "")) == v}
                for v, label, key in options
            ],
        }
        for name, prefix, legend, options in RUBRIC
    ]


def _default_rollout() -> str:
    from django.conf import settings

    return settings.SELCONTROL_DEFAULT_ROLLOUT


def _rollout_keys() -> list[str]:
    from rollout.models import Rollout

    return list(Rollout.objects.order_by("key").values_list("key", flat=True)) or [
        _default_rollout()
    ]


# --- samples -----------------------------------------------------------------------------------


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    if not is_reviewer(request.user):
        return redirect("metrics:review_results")
    return _render_index(request, {}, {}, status=200)


def _render_index(
    request, form: dict, errors: dict, status: int, existing: ReviewSample | None = None
) -> HttpResponse:
    samples = [
        (sample, reviews.sample_progress(sample)) for sample in ReviewSample.objects.all()[:30]
    ]
    defaults = {
        "rollout": _rollout_keys()[0],
        "week": reviews.previous_week().isoformat(),
        "size": reviews.sample_size_default(),
        "double_percent": round(reviews.double_share_default() * 100),
    }
    return render(
        request,
        "metrics/review_index.html",
        {
            "samples": samples,
            "form": {**defaults, **form},
            "errors": errors,
            "existing": existing,
            "rollouts": _rollout_keys(),
        },
        status=status,
    )


@reviewer_required
@require_POST
def draw(request: HttpRequest) -> HttpResponse:
    form = DrawForm(request.POST, rollouts=_rollout_keys())
    if not form.is_valid():
        return _render_index(request, form.shown(), form.sentences(), status=422)
    data = form.cleaned_data
    try:
        sample = reviews.draw_sample(
            rollout_key=data["rollout"],
            week_start=data["week"],
            size=data["size"],
            double_share=data["double_percent"] / 100,
            actor=Actor.of_user(request.user),
            reason=data["reason"],
            origin=ReviewSample.Origin.CONSOLE,
            additional=data["additional"],
        )
    except reviews.SampleExists as exc:
        return _render_index(
            request, form.shown(), {"draw": str(exc)}, status=409, existing=exc.sample
        )
    except reviews.ReviewError as exc:
        return _render_index(request, form.shown(), {"draw": str(exc)}, status=exc.status)
    return redirect("metrics:review_sample", pk=sample.pk)


@reviewer_required
@require_GET
def sample_detail(request: HttpRequest, pk: int) -> HttpResponse:
    sample = get_object_or_404(ReviewSample, pk=pk)
    reproduced = None
    if request.GET.get("verify"):
        reproduced = reviews.reproduce(sample) == reviews.sample_response_ids(sample)
    by_reviewer: dict[str, int] = {}
    for name, _saved in ReviewGrade.objects.filter(
        item__sample=sample, submitted_at__isnull=False
    ).values_list("reviewer__username", "submitted_at"):
        by_reviewer[name] = by_reviewer.get(name, 0) + 1
    return render(
        request,
        "metrics/review_sample.html",
        {
            "sample": sample,
            "progress": reviews.sample_progress(sample, request.user),
            "agreement": reviews.sample_agreement(sample),
            "allocation": sorted(sample.allocation.items()),
            "by_reviewer": sorted(by_reviewer.items()),
            "reproduced": reproduced,
        },
    )


# --- the queue ---------------------------------------------------------------------------------


def _item_context(request, item: ReviewItem, *, values=None, errors=None, token: str = "") -> dict:
    grade = ReviewGrade.objects.filter(item=item, reviewer=request.user).first()
    values = values if values is not None else reviews.grade_form_values(grade)
    errors = errors or {}
    return {
        "rubric": rubric(values, errors),
        "sample": item.sample,
        "item": item,
        "reply": item.response,
        "before": reviews.conversation_before(item.response),
        "values": values,
        "errors": errors,
        "token": token or item.hold_token,
        "progress": reviews.sample_progress(item.sample, request.user),
        "second": item.grades_needed > 1
        and item.grades.filter(submitted_at__isnull=False).exclude(reviewer=request.user).exists(),
        "lease_seconds": int(reviews.lease().total_seconds()),
    }


@reviewer_required
@require_GET
def queue(request: HttpRequest, pk: int) -> HttpResponse:
    sample = get_object_or_404(ReviewSample, pk=pk)
    item = reviews.next_item(sample, request.user)
    if item is None:
        return render(
            request,
            "metrics/review_done.html",
            {"sample": sample, "progress": reviews.sample_progress(sample, request.user)},
        )
    return render(request, "metrics/review_queue.html", _item_context(request, item))


def _refused(request: HtmxHttpRequest, item: ReviewItem, sentence: str) -> HttpResponse:
    """409 with the sentence and a way on, and nothing of the reply: the poster may not be the
    reviewer the queue gave it to."""
    context = {"sample": item.sample, "sentence": sentence}
    template = (
        "metrics/partials/review_refused.html" if request.htmx else "metrics/review_refused.html"
    )
    return render(request, template, context, status=409)


def _item(pk: int) -> ReviewItem:
    return get_object_or_404(ReviewItem.objects.select_related("response", "sample"), pk=pk)


@reviewer_required
@require_POST
def grade(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    item = _item(pk)
    try:
        saved = reviews.submit_grade(item, request.user, request.POST)
    except reviews.ReviewError as exc:
        if exc.status == 409:
            return _refused(request, item, str(exc))
        errors = exc.errors
        context = _item_context(request, item, values=request.POST.dict(), errors=errors)
        context["form_error"] = "" if errors else str(exc)
        context["conflict"] = exc.status == 409
        template = (
            "metrics/partials/review_form.html" if request.htmx else "metrics/review_queue.html"
        )
        return render(request, template, context, status=exc.status)
    context = {
        **_item_context(request, item),
        "grade": saved.grade,
        "saved": True,
        "variant": item.response.variant,
        "next_url": reverse("metrics:review_queue", args=[item.sample_id]),
    }
    if request.htmx:
        return render(request, "metrics/partials/review_saved.html", context)
    return render(request, "metrics/review_queue.html", context)


@reviewer_required
@require_POST
def draft(request: HttpRequest, pk: int) -> HttpResponse:
    grade = reviews.save_draft(_item(pk), request.user, request.POST)
    if grade is None:
        return HttpResponse(
            "Another reviewer holds this reply now.", status=409, content_type="text/plain"
        )
    return HttpResponse(status=204)


@reviewer_required
@require_POST
def hold(request: HttpRequest, pk: int) -> HttpResponse:
    token = HoldForm.read(request.POST)["token"]
    if reviews.renew_hold(_item(pk), request.user, token=token):
        return HttpResponse(status=204)
    return HttpResponse(
        "Another reviewer holds this reply now.", status=409, content_type="text/plain"
    )


@reviewer_required
@require_POST
def release(request: HttpRequest, pk: int) -> HttpResponse:
    item = _item(pk)
    held = HoldForm.read(request.POST)
    reviews.release_hold(item, request.user, token=held["token"])
    if held["leave"]:
        return redirect("metrics:review_sample", pk=item.sample_id)
    return HttpResponse(status=204)


# --- results -----------------------------------------------------------------------------------


@login_required
@require_GET
def results(request: HttpRequest) -> HttpResponse:
    from ..models import ResponseEvent

    variants = sorted(
        ResponseEvent.objects.filter(review_item__isnull=False)
        .values_list("variant", flat=True)
        .distinct()
    )
    form = ResultFilterForm(request.GET, rollouts=_rollout_keys(), variants=variants)
    query, errors = form.query(), form.sentences()
    grades = review_blinding.visible_grades(reviews.graded_replies(query), request.user)
    page = Paginator(grades, PAGE_SIZE).get_page(request.GET.get("page"))
    rollout_key = query["rollout"] or _default_rollout()
    until = timezone.now()
    rates = reviews.weekly_review_rates(rollout_key, until - timedelta(weeks=RATE_WEEKS), until)
    hidden_weeks = review_blinding.hidden_weeks(request.user, rollout_key)
    hidden = {h.week_start for h in hidden_weeks}
    params = request.GET.copy()
    params.pop("page", None)
    for name in errors:
        params.pop(name, None)
    return render(
        request,
        "metrics/review_results.html",
        {
            "page": page,
            "filters": form.shown(),
            "errors": errors,
            "variants": variants,
            "choices": {
                "hallucination": ReviewGrade.Hallucination.choices,
                "format": ReviewGrade.Format.choices,
                "uncertainty": ReviewGrade.Uncertainty.choices,
            },
            "rollouts": _rollout_keys(),
            "querystring": params.urlencode(),
            "rates": [
                {
                    **r,
                    "ci_low": round(100 * r["hallucination_ci"][0]),
                    "ci_high": round(100 * r["hallucination_ci"][1]),
                }
                for r in reversed(rates)
                if r["week"] not in hidden
            ],
            "hidden_weeks": hidden_weeks,
            "hidden_grades": review_blinding.hidden_grade_count(request.user),
            "rates_rollout": rollout_key,
            "now": timezone.now(),
        },
        status=422 if errors else 200,
    )
