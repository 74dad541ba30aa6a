"""The guardrail pages' forms: a rule's settings, the alert webhook, the post-deployment
decision, and where a form on another page sends the operator back to."""

from __future__ import annotations

from django import forms
from django.utils.http import url_has_allowed_host_and_scheme

from rollout.models import Phase

from .models import AlertSettings, DeploymentDecision, GuardrailRule
from .webhooks import WebhookRefused, check_url


class PhaseChoiceField(forms.ModelChoiceField):
    """A phase of the plan, shown with its percentage."""

    def label_from_instance(self, obj: Phase) -> str:
        return f"{obj.name} ({obj.percentage}%)"


class RuleForm(forms.ModelForm):
    class Meta:
        model = GuardrailRule
        fields = ["enabled", "threshold", "min_samples", "alpha", "action", "from_phase"]
        field_classes = {"from_phase": PhaseChoiceField}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from_phase = self.fields["from_phase"]
        assert isinstance(from_phase, PhaseChoiceField)  # Meta.field_classes
        from_phase.queryset = self.instance.rollout.phases.order_by("order")
        from_phase.empty_label = "every phase"
        self.fields["threshold"].help_text = {
            "latency_p95": "factor over v1's p95 (1.5 = 50% slower)",
            "daily_cost": "budget in dollars per day",
            "crash": "error rate of v2's last hour that counts as a crash: 0.10 = 10%",
        }.get(self.instance.metric, "relative margin: 0.10 = up more than 10%; 0 = above v1")

    def clean_threshold(self) -> float:
        value = self.cleaned_data["threshold"]
        if value < 0:
            raise forms.ValidationError("The threshold cannot be negative.")
        if self.instance.metric == "latency_p95" and value < 1:
            raise forms.ValidationError("The latency factor must be at least 1 (1.5 = 50% slower).")
        if self.instance.metric == "daily_cost" and value <= 0:
            raise forms.ValidationError("The daily budget must be more than $0.")
        if self.instance.metric == "crash" and not 0 < value < 1:
            raise forms.ValidationError(
                "The crash guard's error rate must be between 0 and 1 (0.10 = 10%)."
            )
        return value


class AlertSettingsForm(forms.ModelForm):
    class Meta:
        model = AlertSettings
        fields = ["webhook_url", "kind"]

    def clean_webhook_url(self) -> str:
        """Refuse internal addresses and hosts other than Discord's and Slack's (SSRF)."""
        url = (self.cleaned_data.get("webhook_url") or "").strip()
        if url:
            try:
                check_url(url)
            except WebhookRefused as exc:
                raise forms.ValidationError(str(exc)) from None
        return url


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=DeploymentDecision.Decision.choices)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)


class NextForm(forms.Form):
    """``next``: the page a form was posted from, to go back to; only a path on this host
    (an address elsewhere is ignored: no open redirect)."""

    next = forms.CharField(required=False, strip=False)

    def __init__(self, data, *, host: str) -> None:
        super().__init__(data)
        self.host = host

    def clean_next(self) -> str:
        target = self.cleaned_data["next"]
        if url_has_allowed_host_and_scheme(target, allowed_hosts={self.host}):
            return target
        return ""

    def target(self) -> str:
        """The page to go back to, or "" (none given, or not one of this host's)."""
        return self.cleaned_data["next"] if self.is_valid() else ""
