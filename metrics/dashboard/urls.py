"""The comparison dashboard's pages and JSON (metrics/dashboard/views.py, docs/dashboard.md),
included last by metrics/urls.py: its "<slug:key>/" would take "reviews/"."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("projection", views.projection, name="projection"),
    path("<slug:key>/", views.dashboard, name="dashboard"),
    path("<slug:key>/charts/<slug:chart>.<str:fmt>", views.chart_data, name="chart-data"),
    path("<slug:key>/comparison.<str:fmt>", views.comparison_data, name="comparison-data"),
    path("<slug:key>/cost.<str:fmt>", views.cost_data, name="cost-data"),
]
