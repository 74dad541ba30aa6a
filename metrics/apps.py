from django.apps import AppConfig


def success_criteria_gate(rollout, target, now=None) -> list[str]:
    """The phase gate of the success criteria (metrics.guardrails.gate), imported when a phase
    moves rather than while the apps load, which keeps app loading as light as it was."""
    from .guardrails import gate

    return gate.gate_problems(rollout, target, now)


def fleet_alert(entry, instances) -> int:
    """The fleet's alert about instances that missed a change (metrics.guardrails.fleet_alerts),
    imported when one is sent, like the gate above."""
    from .guardrails import fleet_alerts

    return fleet_alerts.alert_unacked(entry, instances)


class MetricsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "metrics"
    verbose_name = "Metrics"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from rollout import fleet, gates

        from . import reference

        gates.register("success-criteria", success_criteria_gate)
        fleet.register_alert_channel(fleet_alert)
        from .models import CorrectionPattern, EmojiSentiment, ModelPrice

        for model in (ModelPrice, EmojiSentiment, CorrectionPattern):
            post_save.connect(
                reference.invalidate,
                sender=model,
                dispatch_uid=f"metrics-ref-save-{model.__name__}",
            )
            post_delete.connect(
                reference.invalidate, sender=model, dispatch_uid=f"metrics-ref-del-{model.__name__}"
            )
