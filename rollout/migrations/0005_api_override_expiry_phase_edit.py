"""Overrides keep only expiry times Python can read back (issue 15: one override expiring at
9999-12-31T23:59:59-14:00, year 10000 in UTC, made config, decide and the console answer 500),
and the audit log gets an action for phase-plan edits made in the admin."""

import datetime

from django.db import migrations, models

STORABLE_MIN = datetime.datetime(1, 1, 2, tzinfo=datetime.UTC)
STORABLE_MAX = datetime.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=datetime.UTC)


def clamp_unreadable_expiries(apps, schema_editor):
    """Bring rows stored before the constraint into range, without reading them (reading is
    what fails): later than the range means "never" in practice, earlier means expired."""
    ChannelOverride = apps.get_model("rollout", "ChannelOverride")
    ChannelOverride.objects.filter(expires_at__gt=STORABLE_MAX).update(expires_at=STORABLE_MAX)
    ChannelOverride.objects.filter(expires_at__lt=STORABLE_MIN).update(expires_at=STORABLE_MIN)


class Migration(migrations.Migration):
    dependencies = [
        ("rollout", "0004_audit_actions_reviews_guardrails"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditentry",
            name="action",
            field=models.CharField(
                choices=[
                    ("rollout.update", "Rollout settings changed"),
                    ("kill_switch.engage", "Emergency rollback (kill switch on)"),
                    ("kill_switch.release", "Re-enabled after rollback"),
                    ("phase.change", "Phase changed"),
                    ("phase.edit", "Phase plan edited"),
                    ("checklist.update", "Checklist ticked or cleared"),
                    ("override.set", "Channel override set"),
                    ("override.remove", "Channel override removed"),
                    ("token.create", "API token created"),
                    ("token.revoke", "API token revoked"),
                    ("review.sample", "Review sample drawn"),
                    ("guardrail.update", "Guardrail rule changed"),
                    ("deployment.decision", "Post-deployment decision recorded"),
                ],
                db_index=True,
                max_length=64,
            ),
        ),
        migrations.RunPython(clamp_unreadable_expiries, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="channeloverride",
            constraint=models.CheckConstraint(
                condition=models.Q(expires_at__isnull=True)
                | models.Q(expires_at__range=(STORABLE_MIN, STORABLE_MAX)),
                name="override_expires_at_readable",
            ),
        ),
    ]
