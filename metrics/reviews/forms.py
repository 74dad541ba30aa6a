"""The review pages' inputs, read by Django forms: the sample draw (POST) and the results
list's filters (GET).

Each refusal is one sentence naming the field, shown beside it (the draw) or above the list (the
filters). Values are stripped; a NUL character gets the field's own sentence rather than
Django's generic one (``_Text``). The grading rubric is read by the service
(``services.submit_grade``), which the keyboard-driven queue and the API share.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.core.validators import ProhibitNullCharactersValidator

from . import services as reviews

DRAW_SIZE = (1, 1000)
REASON_LIMIT = 500
ORDERS = ("", "recent", "upvoted", "downvoted", "sel_low")
TEXT_LIMIT = 200  # the results list's free-text filters


class _Text(forms.CharField):
    """Optional text, stripped; NUL characters are left to the field's own check and sentence."""

    def __init__(self, *, strip: bool = True) -> None:
        super().__init__(required=False, strip=strip)
        self.validators = [
            v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)
        ]


class _Sentences(forms.Form):
    def sentences(self) -> dict[str, str]:
        """Field name -> the first sentence refusing it, in the order the fields are read."""
        return {name: str(errors[0]) for name, errors in self.errors.items()}

    def typed(self) -> dict[str, str]:
        """What was sent for each field, stripped as the field reads it (to show it again)."""
        out = {}
        for name, field in self.fields.items():
            value = self[name].data or ""
            out[name] = (
                value.strip() if isinstance(field, forms.CharField) and field.strip else value
            )
        return out


def _week(value: str) -> date:
    """Any day of a week that has started means that week (services.parse_week)."""
    try:
        return reviews.parse_week(value)
    except reviews.ReviewError as exc:
        raise forms.ValidationError(str(exc)) from None


class DrawForm(_Sentences):
    """A sample drawn from the review page: which rollout and week, how many replies, the share
    graded twice (a percentage), why, and whether it is an additional sample of that week."""

    rollout = _Text()
    week = _Text()
    size = _Text()
    double_percent = _Text()
    reason = _Text()
    additional = _Text(strip=False)

    def __init__(self, data: Any, *, rollouts: list[str]) -> None:
        super().__init__(data)
        self.rollouts = rollouts

    def clean_rollout(self) -> str:
        value = self.cleaned_data["rollout"]
        if value not in self.rollouts:
            raise forms.ValidationError("rollout must be one of the rollouts listed.")
        return value

    def clean_week(self) -> date:
        return _week(self.cleaned_data["week"])

    def clean_size(self) -> int:
        low, high = DRAW_SIZE
        try:
            size = int(self.cleaned_data["size"])
        except ValueError:
            size = None
        if size is None or not low <= size <= high:
            raise forms.ValidationError(f"size must be a whole number between {low} and {high}.")
        return size

    def clean_double_percent(self) -> float:
        try:
            double = float(self.cleaned_data["double_percent"] or 0)
        except ValueError:
            double = float("nan")
        if not 0 <= double <= 100:  # NaN and infinities too
            raise forms.ValidationError("double grading must be a percentage between 0 and 100.")
        return double

    def clean_reason(self) -> str:
        value = self.cleaned_data["reason"]
        if "\x00" in value or len(value) > REASON_LIMIT:
            raise forms.ValidationError(
                f"The reason must be plain text of at most {REASON_LIMIT} characters."
            )
        return value

    def clean_additional(self) -> bool:
        return bool(self.cleaned_data["additional"])

    def shown(self) -> dict[str, Any]:
        """The form's values as the page shows them again: as typed, the box as ticked."""
        return {**self.typed(), "additional": bool(self["additional"].data)}


class ResultFilterForm(_Sentences):
    """The results list's filters. A value that cannot be used gets a sentence and that filter
    is dropped (``query()`` has it empty); the others still apply. Values come from the lists
    offered, a week that has started, a sample number, and text without NUL characters."""

    rollout = _Text()
    variant = _Text()
    hallucination = _Text()
    format = _Text()
    uncertainty = _Text()
    consistent = _Text()
    order = _Text()
    q = _Text()
    reviewer = _Text()
    week = _Text()
    sample = _Text()

    TEXT_LABELS = {"q": "The text to search", "reviewer": "reviewer"}

    def __init__(self, data: Any, *, rollouts: list[str], variants: list[str]) -> None:
        super().__init__(data)
        self.choices = {
            "rollout": rollouts,
            "variant": variants,
            "hallucination": reviews.CHOICES["hallucination"],
            "format": reviews.CHOICES["format"],
            "uncertainty": reviews.CHOICES["uncertainty"],
            "consistent": ["yes", "no"],
        }

    def clean_rollout(self) -> str:
        return self._choice("rollout")

    def clean_variant(self) -> str:
        return self._choice("variant")

    def clean_hallucination(self) -> str:
        return self._choice("hallucination")

    def clean_format(self) -> str:
        return self._choice("format")

    def clean_uncertainty(self) -> str:
        return self._choice("uncertainty")

    def clean_consistent(self) -> str:
        return self._choice("consistent")

    def clean_q(self) -> str:
        return self._text("q")

    def clean_reviewer(self) -> str:
        return self._text("reviewer")

    def _choice(self, name: str) -> str:
        value, allowed = self.cleaned_data[name], self.choices[name]
        if value and value not in allowed:
            shown = value.replace("\x00", "\\0")[:40]
            listed = ", ".join(allowed) or "(none yet)"
            raise forms.ValidationError(f"{name} must be one of {listed}; got {shown!r}.")
        return value

    def _text(self, name: str) -> str:
        value, label = self.cleaned_data[name], self.TEXT_LABELS[name]
        if "\x00" in value:
            raise forms.ValidationError(f"{label} must not contain a NUL character (%00).")
        if len(value) > TEXT_LIMIT:
            raise forms.ValidationError(
                f"{label} is {len(value)} characters long; the limit is {TEXT_LIMIT}."
            )
        return value

    def clean_order(self) -> str:
        if self.cleaned_data["order"] not in ORDERS:
            raise forms.ValidationError("order must be recent, upvoted, downvoted or sel_low.")
        return self.cleaned_data["order"]

    def clean_week(self) -> date | str:
        value = self.cleaned_data["week"]
        return _week(value) if value else ""

    def clean_sample(self) -> str:
        value = self.cleaned_data["sample"]
        if value and not (value.isascii() and value.isdigit() and int(value) < 2**31):
            raise forms.ValidationError("sample must be a sample number.")
        return value

    def query(self) -> dict[str, Any]:
        """The filters as services.graded_replies takes them: each usable one, the others
        empty."""
        self.is_valid()  # cleans once
        return {name: self.cleaned_data.get(name, "") for name in self.fields}

    def shown(self) -> dict[str, str]:
        """The filters as the page shows them again: as typed, without NUL characters."""
        return {name: value.replace("\x00", "") for name, value in self.typed().items()}


class HoldForm(forms.Form):
    """The queue's hold on a reply, renewed or released: the token the queue gave (a token never
    holds a NUL character: one sent is dropped, and the token then matches no hold), and on
    release whether the reviewer leaves the queue for the sample's page."""

    token = _Text(strip=False)
    leave = _Text(strip=False)

    def clean_token(self) -> str:
        return self.cleaned_data["token"].replace("\x00", "")

    def clean_leave(self) -> bool:
        return bool(self.cleaned_data["leave"])

    @classmethod
    def read(cls, data: Any) -> dict[str, Any]:
        """The cleaned values; every value is acceptable, so this never refuses."""
        form = cls(data)
        form.is_valid()
        return form.cleaned_data
