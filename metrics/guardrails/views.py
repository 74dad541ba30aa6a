"""Pages of the guardrails: the rules editor (operators edit, everyone signed in reads), the
alert webhook, and the post-deployment report with its downloads and the decision form.

Status codes of change views: 200/302 done, 403 not an operator, 422 invalid input (the page
shows the form with one sentence per wrong field).
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from rollout import freshness, services
from rollout.models import Rollout
from rollout.roles import is_operator, operator_required
from selcontrol.http import HtmxHttpRequest

from . import deployment_report, gate
from . import services as guardrail_services
from .forms import AlertSettingsForm, DecisionForm, NextForm, RuleForm
from .models import Alert, AlertSettings, DeploymentDecision, GuardrailRule, GuardrailTransition
from .webhooks import WebhookRefused


def _rollout(key: str) -> Rollout:
    return get_object_or_404(Rollout.objects.select_related("current_phase"), key=key)


def _actor(request: HttpRequest) -> services.Actor:
    return services.Actor.of_user(request.user)


def _rules_page(
    request: HttpRequest, rollout: Rollout, *, status: int = 200, bad_form=None, settings_form=None
) -> HttpResponse:
    rows = []
    for rule, state in guardrail_services.states(rollout):
        form = (
            bad_form
            if bad_form is not None and bad_form.instance.pk == rule.pk
            else RuleForm(instance=rule, prefix=f"r{rule.pk}")
        )
        rows.append({"rule": rule, "state": state, "form": form})
    config = AlertSettings.objects.filter(rollout=rollout).first()
    ctx = {
        "rollout": rollout,
        "rows": rows,
        "can_operate": is_operator(request.user),
        "settings_form": settings_form or AlertSettingsForm(instance=config),
        "alerts": Alert.objects.filter(rollout=rollout).select_related("rule")[:20],
        "transitions": GuardrailTransition.objects.filter(rule__rollout=rollout).select_related(
            "rule"
        )[:30],
        **gate.context(rollout),
    }
    return render(request, "metrics/guardrails.html", ctx, status=status)


@login_required
def rules(request: HttpRequest, key: str) -> HttpResponse:
    return _rules_page(request, _rollout(key))


@login_required
def status(request: HttpRequest, key: str) -> HttpResponse:
    """The status panel alone (for htmx refreshes)."""
    return render(
        request, "metrics/partials/guardrail_status_page.html", {"rollout": _rollout(key)}
    )


@operator_required
@require_POST
def update_rule(request: HttpRequest, key: str, pk: int) -> HttpResponse:
    rollout = _rollout(key)
    rule = get_object_or_404(GuardrailRule, pk=pk, rollout=rollout)
    form = RuleForm(
        request.POST, instance=GuardrailRule.objects.get(pk=rule.pk), prefix=f"r{rule.pk}"
    )
    if not form.is_valid():
        return _rules_page(request, rollout, status=422, bad_form=form)
    changes = {name: form.cleaned_data[name] for name in form.Meta.fields}
    updated = guardrail_services.update_rule(rule, actor=_actor(request), **changes)
    if updated.updated_at != rule.updated_at:  # changed (and audited by the service)
        messages.success(request, f"Rule {rule.key} saved; its evidence starts again from now.")
    return redirect("metrics:guardrails", key=rollout.key)


@operator_required
@require_POST
def evaluate_now(request: HtmxHttpRequest, key: str) -> HttpResponse:
    """Evaluate every rule of the rollout now (what the scheduler does every minute)."""
    rollout = _rollout(key)
    outcomes = guardrail_services.evaluate_on_demand(rollout, actor=_actor(request))
    acted = [o for o in outcomes if o.action]
    message = f"Evaluated {len(outcomes)} guardrail{'s' if len(outcomes) != 1 else ''} now" + (
        "; " + "; ".join(f"{o.rule}: {o.action}" for o in acted) if acted else "."
    )
    if request.htmx:
        freshness.stamp(request, fresh=True)
        return freshness.announce_change(request, HttpResponse(status=204))
    messages.success(request, message)
    return redirect(_safe_next(request, rollout))


def _safe_next(request: HttpRequest, rollout: Rollout) -> str:
    """Back to the page the form was on (same host only), else the rollout page."""
    form = NextForm(request.POST, host=request.get_host())
    return form.target() or reverse("rollout:detail", args=[rollout.key])


@operator_required
@require_POST
def reset_rule(request: HttpRequest, key: str, pk: int) -> HttpResponse:
    rollout = _rollout(key)
    rule = get_object_or_404(GuardrailRule, pk=pk, rollout=rollout)
    guardrail_services.reset_rule(rule, actor=_actor(request))
    messages.success(request, f"Rule {rule.key} starts collecting evidence again from now.")
    return redirect("metrics:guardrails", key=rollout.key)


@operator_required
@require_POST
def alert_settings(request: HttpRequest, key: str) -> HttpResponse:
    rollout = _rollout(key)
    config = AlertSettings.objects.filter(rollout=rollout).first() or AlertSettings(rollout=rollout)
    form = AlertSettingsForm(request.POST, instance=config)
    if not form.is_valid():
        return _rules_page(request, rollout, status=422, settings_form=form)
    try:
        guardrail_services.set_alert_webhook(
            rollout,
            url=form.cleaned_data["webhook_url"],
            kind=form.cleaned_data["kind"],
            actor=_actor(request),
        )
    except WebhookRefused as exc:  # the name resolves elsewhere since the form checked it
        form.add_error("webhook_url", str(exc))
        return _rules_page(request, rollout, status=422, settings_form=form)
    messages.success(request, "Alert webhook saved.")
    return redirect("metrics:guardrails", key=rollout.key)


# --- the post-deployment review ------------------------------------------------------------------


def _report_page(
    request: HttpRequest, rollout: Rollout, *, form=None, status: int = 200, error: str = ""
) -> HttpResponse:
    data = deployment_report.build(rollout)
    return render(
        request,
        "metrics/report.html",
        {
            "rollout": rollout,
            "report": data,
            "form": form or DecisionForm(),
            "can_operate": is_operator(request.user),
            "decisions": DeploymentDecision.objects.filter(rollout=rollout),
            "chart": deployment_report.trend_chart(data, rollout.control_variant),
            "not_yet": deployment_report.decision_not_yet(data),
            "error": error,
        },
        status=status,
    )


@login_required
def report(request: HttpRequest, key: str) -> HttpResponse:
    return _report_page(request, _rollout(key))


@login_required
def report_download(request: HttpRequest, key: str, fmt: str) -> HttpResponse:
    rollout = _rollout(key)
    data = deployment_report.build(rollout)
    stamp = timezone.now().strftime("%Y%m%d")
    if fmt == "md":
        response = HttpResponse(
            deployment_report.markdown(data), content_type="text/markdown; charset=utf-8"
        )
    elif fmt == "json":
        response = HttpResponse(json.dumps(data, indent=2), content_type="application/json")
    else:
        raise Http404("The report downloads as .md or .json.")
    response["Content-Disposition"] = (
        f'attachment; filename="{rollout.key}-post-deployment-review-{stamp}.{fmt}"'
    )
    return response


@operator_required
@require_POST
def decide(request: HttpRequest, key: str) -> HttpResponse:
    rollout = _rollout(key)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _report_page(request, rollout, form=form, status=422)
    try:
        made = deployment_report.record_decision(
            rollout,
            decision=form.cleaned_data["decision"],
            actor=_actor(request),
            reason=form.cleaned_data["reason"],
        )
    except services.ServiceError as exc:
        return _report_page(request, rollout, form=form, status=exc.status, error=str(exc))
    messages.success(request, f"Decision recorded: {made.get_decision_display()}.")
    return redirect("metrics:report", key=rollout.key)
