"""Guardrails and the post-deployment review (metrics/guardrails/views.py, docs/guardrails.md),
included by metrics/urls.py under a rollout's key."""

from django.urls import path

from . import views

urlpatterns = [
    path("<slug:key>/guardrails/", views.rules, name="guardrails"),
    path("<slug:key>/guardrails/status/", views.status, name="guardrail_status"),
    path("<slug:key>/guardrails/evaluate/", views.evaluate_now, name="guardrail_evaluate"),
    path("<slug:key>/guardrails/webhook/", views.alert_settings, name="guardrail_webhook"),
    path("<slug:key>/guardrails/<int:pk>/", views.update_rule, name="guardrail_update"),
    path("<slug:key>/guardrails/<int:pk>/reset/", views.reset_rule, name="guardrail_reset"),
    path("<slug:key>/report/", views.report, name="report"),
    path("<slug:key>/report/decision/", views.decide, name="report_decide"),
    path("<slug:key>/report.<str:fmt>", views.report_download, name="report_download"),
]
