"""Operator console pages (server-rendered, htmx for in-place updates)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from .models import Rollout


@login_required
def index(request: HttpRequest) -> HttpResponse:
    rollouts = list(Rollout.objects.select_related("current_phase"))
    if len(rollouts) == 1:
        return redirect("rollout:detail", key=rollouts[0].key)
    return render(request, "rollout/index.html", {"rollouts": rollouts})


@login_required
def detail(request: HttpRequest, key: str) -> HttpResponse:
    rollout = get_object_or_404(Rollout.objects.select_related("current_phase"), key=key)
    return render(
        request,
        "rollout/detail.html",
        {"rollout": rollout, "phases": rollout.phases.order_by("order")},
    )
