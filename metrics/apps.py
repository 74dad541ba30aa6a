from django.apps import AppConfig


class MetricsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "metrics"
    verbose_name = "Metrics"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from rollout import gates

        from . import reference
        from .guardrails import criteria

        gates.register("success-criteria", criteria.gate_problems)
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
