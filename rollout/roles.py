"""Users and roles: operators change rollouts, reviewers grade responses, viewers read.

A role is membership of the Django group of the same name (created by a migration); a
superuser counts as an operator. Operators may also review.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

OPERATOR = "operator"
REVIEWER = "reviewer"
VIEWER = "viewer"
GROUPS = {OPERATOR: "operators", REVIEWER: "reviewers", VIEWER: "viewers"}


def _groups(user) -> set[str]:
    cached = getattr(user, "_selcontrol_groups", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True)) if user.is_authenticated else set()
        user._selcontrol_groups = cached
    return cached


def is_operator(user) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or GROUPS[OPERATOR] in _groups(user)))


def is_reviewer(user) -> bool:
    return is_operator(user) or (user.is_authenticated and GROUPS[REVIEWER] in _groups(user))


def role_of(user) -> str | None:
    if not user.is_authenticated:
        return None
    if is_operator(user):
        return OPERATOR
    if GROUPS[REVIEWER] in _groups(user):
        return REVIEWER
    return VIEWER


def operator_required(view):
    """Login required, and 403 for anyone who is not an operator."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not is_operator(request.user):
            raise PermissionDenied("Only operators can change rollouts.")
        return view(request, *args, **kwargs)

    return wrapped


def reviewer_required(view):
    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not is_reviewer(request.user):
            raise PermissionDenied("Only reviewers and operators can grade responses.")
        return view(request, *args, **kwargs)

    return wrapped
