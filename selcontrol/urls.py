from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import health, telemetry
from .api import api

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", telemetry.metrics_view, name="prometheus-metrics"),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("metrics/", include("metrics.urls")),
    path("", include("rollout.urls")),
]
