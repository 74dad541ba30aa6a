from django.urls import path

from . import views

app_name = "metrics"
urlpatterns = [
    # comparison dashboard (metrics/views.py)
    path("", views.home, name="home"),
    path("projection", views.projection, name="projection"),
    path("<slug:key>/", views.dashboard, name="dashboard"),
    path("<slug:key>/charts/<slug:chart>.<str:fmt>", views.chart_data, name="chart-data"),
    path("<slug:key>/comparison.<str:fmt>", views.comparison_data, name="comparison-data"),
    path("<slug:key>/cost.<str:fmt>", views.cost_data, name="cost-data"),
]

# Human review (metrics/review_views.py, docs/reviews.md). Inserted first so that the
# dashboard's "<slug:key>/" does not take "reviews/".
from . import review_views  # noqa: E402

urlpatterns[0:0] = [
    path("reviews/", review_views.index, name="reviews"),
    path("reviews/draw/", review_views.draw, name="review_draw"),
    path("reviews/results/", review_views.results, name="review_results"),
    path("reviews/samples/<int:pk>/", review_views.sample_detail, name="review_sample"),
    path("reviews/samples/<int:pk>/queue/", review_views.queue, name="review_queue"),
    path("reviews/items/<int:pk>/grade/", review_views.grade, name="review_grade"),
    path("reviews/items/<int:pk>/draft/", review_views.draft, name="review_draft"),
    path("reviews/items/<int:pk>/hold/", review_views.hold, name="review_hold"),
    path("reviews/items/<int:pk>/release/", review_views.release, name="review_release"),
]

# Guardrails and the post-deployment review (metrics/guardrail_views.py, docs/guardrails.md).
from . import guardrail_views  # noqa: E402

urlpatterns += [
    path("<slug:key>/guardrails/", guardrail_views.rules, name="guardrails"),
    path("<slug:key>/guardrails/status/", guardrail_views.status, name="guardrail_status"),
    path(
        "<slug:key>/guardrails/evaluate/", guardrail_views.evaluate_now, name="guardrail_evaluate"
    ),
    path(
        "<slug:key>/guardrails/webhook/", guardrail_views.alert_settings, name="guardrail_webhook"
    ),
    path("<slug:key>/guardrails/<int:pk>/", guardrail_views.update_rule, name="guardrail_update"),
    path(
        "<slug:key>/guardrails/<int:pk>/reset/", guardrail_views.reset_rule, name="guardrail_reset"
    ),
    path("<slug:key>/report/", guardrail_views.report, name="report"),
    path("<slug:key>/report/decision/", guardrail_views.decide, name="report_decide"),
    path("<slug:key>/report.<str:fmt>", guardrail_views.report_download, name="report_download"),
]
