"""Console forms: they parse and check what the operator typed; services make the change."""

from __future__ import annotations

from datetime import UTC

from django import forms

from .models import CHANNEL_ID_RE, ApiToken, Rollout

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
    expires_at = forms.DateTimeField(
        label="Expires (UTC, optional)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
    )

    def __init__(self, *args, rollout: Rollout, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["variant"].choices = [(v, v) for v in rollout.variants]

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        # The console asks for UTC; Django made it aware in the default zone, which is UTC.
        return value.astimezone(UTC) if value else None


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
        from .models import AuditEntry

        self.fields["action"].choices = [("", "Any change")] + list(AuditEntry.Action.choices)
