from django.urls import path

from . import views

app_name = "rollout"
urlpatterns = [
    path("", views.index, name="index"),
    path("rollouts/<slug:key>/", views.detail, name="detail"),
]
