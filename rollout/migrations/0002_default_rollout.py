"""Create the roles' groups, the config revision row and the default rollout, prompts_v2, with
the deployment guide's four-phase plan. The rollout starts as the bot runs today before v2:
kill switch on (ENABLE_PROMPTS_V2=false), 0%."""

from datetime import timedelta

from django.db import migrations

PHASES = [
    (
        1, "Alpha", 5, timedelta(hours=24), None,
        "Verify no regressions, basic quality improvements visible",
        "No crashes or errors\nResponses still sound like Sel\n"
        "At least one instance of improved behavior (better uncertainty, structure compliance, etc.)",
        "Any crashes or major personality changes",
    ),
    (
        2, "Beta", 20, timedelta(days=3), timedelta(days=7),
        "Gather statistically significant quality data",
        "User satisfaction maintained or improved\nHallucination rate same or lower\n"
        "No increase in correction rate",
        "User complaints increase >10%, or hallucinations increase",
    ),
    (
        3, "Canary", 50, timedelta(days=7), None,
        "Confirm scalability and broad compatibility",
        "Cost increase acceptable (3-4x tokens)\nNo latency degradation\n"
        "Quality improvements consistent across channel types",
        "Cost unsustainable, or latency issues",
    ),
    (
        4, "Full", 100, timedelta(days=14), None,
        "Complete migration to enhanced prompts",
        "Stable for 14 days before considering permanent",
        "Major unforeseen issue",
    ),
]


def forwards(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ("operators", "reviewers", "viewers"):
        Group.objects.get_or_create(name=name)
    ConfigState = apps.get_model("rollout", "ConfigState")
    ConfigState.objects.get_or_create(pk=1, defaults={"revision": 1})
    Rollout = apps.get_model("rollout", "Rollout")
    Phase = apps.get_model("rollout", "Phase")
    rollout, created = Rollout.objects.get_or_create(
        key="prompts_v2",
        defaults={
            "name": "Prompts v2",
            "description": "Enhanced prompt system: guardrails, few-shot examples, reasoning "
            "scaffolds (~3.4x input tokens).",
            "control_variant": "v1",
            "treatment_variant": "v2_full",
            "simplified_variant": "v2_simplified",
            "salt": "",
            "enabled": False,
            "percentage": 0,
            "simplified_percentage": 0,
            "strategy": "sticky",
            "revision": 1,
        },
    )
    if created:
        for order, name, pct, min_watch, max_watch, goal, criteria, trigger in PHASES:
            Phase.objects.create(
                rollout=rollout, order=order, name=name, percentage=pct, min_watch=min_watch,
                max_watch=max_watch, goal=goal, success_criteria=criteria, rollback_trigger=trigger,
            )


class Migration(migrations.Migration):
    dependencies = [
        ("rollout", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
