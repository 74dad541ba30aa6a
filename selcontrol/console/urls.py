"""The console's pages (selcontrol/console/views.py and fleet_views.py), under the ``rollout``
URL namespace they always had."""

from django.urls import path

from . import fleet_views, views

app_name = "rollout"
urlpatterns = [
    path("", views.index, name="index"),
    path("audit/", views.audit_log, name="audit"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/new/", views.create_token, name="create_token"),
    path("tokens/<int:pk>/revoke/", views.revoke_token, name="revoke_token"),
    path("console/alerts/", views.alerts, name="alerts"),
    path("console/stamp/", views.console_stamp, name="console_stamp"),
    path("rollouts/<slug:key>/", views.detail, name="detail"),
    path("rollouts/<slug:key>/sections/<slug:name>/", views.section, name="section"),
    path("rollouts/<slug:key>/preview/", views.preview, name="preview"),
    path("rollouts/<slug:key>/lookup/", views.lookup, name="lookup"),
    path("rollouts/<slug:key>/percentage/", views.set_percentage, name="set_percentage"),
    path("rollouts/<slug:key>/phase/", views.move_phase, name="move_phase"),
    path("rollouts/<slug:key>/hold/", views.hold, name="hold"),
    path("rollouts/<slug:key>/checklist/", views.tick, name="tick"),
    path("rollouts/<slug:key>/overrides/", views.add_override, name="add_override"),
    path(
        "rollouts/<slug:key>/overrides/<str:channel_id>/remove/",
        views.remove_override,
        name="remove_override",
    ),
    path("rollouts/<slug:key>/rollback/", views.rollback, name="rollback"),
    path("rollouts/<slug:key>/reenable/", views.reenable, name="reenable"),
    path("rollouts/<slug:key>/fleet/", fleet_views.fleet_panel, name="fleet"),
    path("rollouts/<slug:key>/fleet/srm/", fleet_views.fleet_srm, name="fleet_srm"),
]
