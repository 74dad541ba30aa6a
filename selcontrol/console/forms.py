"""Console forms: they parse and check what the operator typed or the page asked for (every GET
and POST input of selcontrol/console's views); rollout's services make the change."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.utils import timezone

from rollout import services
from rollout.models import CHANNEL_ID_RE, ApiToken, AuditEntry, Rollout

REASON_HELP = "Kept in the audit log."


def _reason(required: bool = True, label: str = "Reason") -> forms.CharField:
    return forms.CharField(
        label=label,
        required=required,
        max_length=2000,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text=REASON_HELP,
    )


class RevisionForm(forms.Form):
    """Every change form carries the revision the operator saw."""

    revision = forms.IntegerField(min_value=0, widget=forms.HiddenInput)


class PercentageForm(RevisionForm):
    percentage = forms.IntegerField(min_value=0, max_value=100)
    simplified_percentage = forms.IntegerField(min_value=0, max_value=100)
    reason = _reason()


class PreviewForm(forms.Form):
    percentage = forms.IntegerField(min_value=0, max_value=100)
    simplified_percentage = forms.IntegerField(min_value=0, max_value=100, required=False)


class PhaseForm(RevisionForm):
    phase = forms.IntegerField(min_value=1)
    reason = _reason()
    gate_override_reason = forms.CharField(required=False, max_length=2000)


class HoldForm(RevisionForm):
    reason = _reason()


class ChecklistForm(forms.Form):
    phase = forms.IntegerField(min_value=1)
    item = forms.CharField(max_length=64)
    checked = forms.BooleanField(required=False)


class OverrideForm(RevisionForm):
    channel_id = forms.RegexField(
        regex=CHANNEL_ID_RE,
        max_length=64,
        label="Channel id",
        error_messages={"invalid": "A channel id is 1-64 letters, digits, '_', '.', ':' or '-'."},
    )
    variant = forms.ChoiceField(choices=())
    reason = _reason()
    expires_at = forms.CharField(label="Expires (optional)", required=False, max_length=40)
    # The operator's IANA time zone, filled in by static/js/console.js from the browser
    # (Intl.DateTimeFormat); without JavaScript the expiry is read as UTC, and the form says so.
    tz = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, rollout: Rollout, **kwargs):
        super().__init__(*args, **kwargs)
        self.rollout = rollout
        variant = self.fields["variant"]
        assert isinstance(variant, forms.ChoiceField)  # declared above
        variant.choices = [(v, v) for v in rollout.variants]

    def clean_channel_id(self):
        value = self.cleaned_data["channel_id"].strip()
        problem = self.rollout.channel_id_problem(value)
        if problem:
            raise forms.ValidationError(problem)
        return value

    def clean_tz(self):
        return zone_of(self.cleaned_data.get("tz") or "")

    def clean(self) -> dict[str, Any]:
        super().clean()  # Form.clean: the cleaned data, typed as optional for overrides
        data = self.cleaned_data
        raw = (data.get("expires_at") or "").strip()
        zone = data.get("tz") or UTC
        if not raw:
            data["expires_at"] = None
            return data
        local = _parse_local(raw)
        if local is None:
            self.add_error(
                "expires_at",
                "The expiry is not a date and time; pick one in the field, e.g. tomorrow 09:00, "
                "or leave it empty for an override that never expires.",
            )
            return data
        when = local.replace(tzinfo=zone)
        now = timezone.now()
        if when <= now:
            here = now.astimezone(zone)
            self.add_error(
                "expires_at",
                f"The expiry {local:%Y-%m-%d %H:%M} is in the past: it is now "
                f"{here:%Y-%m-%d %H:%M} in your time zone ({_zone_label(zone, now)}). Pick a "
                "later time, or leave it empty for an override that never expires.",
            )
            return data
        data["expires_at"] = when.astimezone(UTC)
        return data


def zone_of(name: str) -> tzinfo:
    """The named IANA zone (from the browser), or UTC when it is empty or unknown."""
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return UTC


def _zone_label(zone: tzinfo, at: datetime) -> str:
    offset = at.astimezone(zone).strftime("%z")  # +0530
    name = getattr(zone, "key", "UTC")
    return f"{name}, UTC{offset[:3]}:{offset[3:]}" if name != "UTC" else "UTC"


def _parse_local(raw: str) -> datetime | None:
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(raw, fmt)
        except ValueError:
            continue
    return None


class RemoveOverrideForm(RevisionForm):
    reason = _reason()


class RollbackForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "What went wrong?"}),
        help_text=REASON_HELP,
    )


class ReEnableForm(RevisionForm):
    percentage = forms.IntegerField(min_value=0, max_value=100)
    reason = _reason()


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. sel-bot-prod")
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices, widget=forms.CheckboxSelectMultiple
    )


class AuditFilterForm(forms.Form):
    rollout = forms.CharField(required=False)
    actor = forms.CharField(required=False, max_length=150)
    action = forms.ChoiceField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        action = self.fields["action"]
        assert isinstance(action, forms.ChoiceField)  # declared above
        action.choices = [("", "Any change")] + list(AuditEntry.Action.choices)


class OverrideSearchForm(forms.Form):
    """The overrides section's search: channel ids containing ``q`` (stripped; empty: all)."""

    q = forms.CharField(required=False)

    def query(self) -> str:
        return self.cleaned_data["q"] if self.is_valid() else ""


class AlertsPartForm(forms.Form):
    """Which header part to draw (the emergency button or the kill-switch banner) and, on a
    rollout's page, for which rollout (else every rollout)."""

    part = forms.ChoiceField(choices=[("banner", "banner"), ("emergency", "emergency")])
    rollout = forms.CharField(required=False, strip=False)


class LookupForm(forms.Form):
    """Which version does a channel get: a channel id as the rollout's channels are named
    (empty: the question not asked yet)."""

    channel_id = forms.CharField(required=False)

    def __init__(self, *args, rollout: Rollout, **kwargs):
        super().__init__(*args, **kwargs)
        self.rollout = rollout

    def clean_channel_id(self) -> str:
        value = self.cleaned_data["channel_id"]
        if not value:
            return value
        try:
            value = services._validate_channel_id(value)
            problem = self.rollout.channel_id_problem(value)
            if problem:
                raise services.InvalidChange(problem)
        except services.ServiceError as exc:
            raise forms.ValidationError(str(exc)) from None
        return value

    def asked(self) -> str:
        """The channel id as asked (stripped), to show again beside the answer."""
        return (self["channel_id"].data or "").strip()
