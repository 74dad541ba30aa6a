"""The human review's pages (metrics/reviews/views.py, docs/reviews.md), included first by
metrics/urls.py so that the dashboard's "<slug:key>/" does not take "reviews/"."""

from django.urls import path

from . import views

urlpatterns = [
    path("reviews/", views.index, name="reviews"),
    path("reviews/draw/", views.draw, name="review_draw"),
    path("reviews/results/", views.results, name="review_results"),
    path("reviews/samples/<int:pk>/", views.sample_detail, name="review_sample"),
    path("reviews/samples/<int:pk>/queue/", views.queue, name="review_queue"),
    path("reviews/items/<int:pk>/grade/", views.grade, name="review_grade"),
    path("reviews/items/<int:pk>/draft/", views.draft, name="review_draft"),
    path("reviews/items/<int:pk>/hold/", views.hold, name="review_hold"),
    path("reviews/items/<int:pk>/release/", views.release, name="review_release"),
]
