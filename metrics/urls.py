from django.urls import include, path

from . import views

app_name = "metrics"
urlpatterns = [
    # human review (metrics/reviews/urls.py, docs/reviews.md): first, so that the dashboard's
    # "<slug:key>/" does not take "reviews/"
    path("", include("metrics.reviews.urls")),
    # comparison dashboard (metrics/views.py)
    path("", views.home, name="home"),
    path("projection", views.projection, name="projection"),
    path("<slug:key>/", views.dashboard, name="dashboard"),
    path("<slug:key>/charts/<slug:chart>.<str:fmt>", views.chart_data, name="chart-data"),
    path("<slug:key>/comparison.<str:fmt>", views.comparison_data, name="comparison-data"),
    path("<slug:key>/cost.<str:fmt>", views.cost_data, name="cost-data"),
    # guardrails and the post-deployment review (metrics/guardrails/urls.py, docs/guardrails.md)
    path("", include("metrics.guardrails.urls")),
]
