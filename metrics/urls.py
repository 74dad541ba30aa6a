from django.urls import include, path

app_name = "metrics"
urlpatterns = [
    # human review (metrics/reviews/urls.py, docs/reviews.md): first, so that the dashboard's
    # "<slug:key>/" does not take "reviews/"
    path("", include("metrics.reviews.urls")),
    # comparison dashboard (metrics/dashboard/urls.py, docs/dashboard.md)
    path("", include("metrics.dashboard.urls")),
    # guardrails and the post-deployment review (metrics/guardrails/urls.py, docs/guardrails.md)
    path("", include("metrics.guardrails.urls")),
]
