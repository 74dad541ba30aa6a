# The crash guard's onset test (issue 18): it may act from 2 errors (the scan of the last hour
# keeps needing 3, metrics.guardrails.CRASH_SCAN_MIN_ERRORS). Rules still as preloaded get the
# new floor and note; a rule an operator changed is left as it is.

from django.db import migrations

OLD = (
    3,
    "Alpha and every later phase: any crashes. v2's error rate over its last hour of replies "
    "against 10% (or v1's rate then). Emergency rollback.",
)
NEW = (
    2,
    "Alpha and every later phase: any crashes. v2's error rate over its first replies "
    "and its last hour of replies against 10% (or v1's rate then). Emergency rollback.",
)


def _move(apps, source, target):
    GuardrailRule = apps.get_model("metrics", "GuardrailRule")
    GuardrailRule.objects.filter(
        metric="crash", key="crash", min_samples=source[0], note=source[1]
    ).update(min_samples=target[0], note=target[1])


def forwards(apps, schema_editor):
    _move(apps, OLD, NEW)


def backwards(apps, schema_editor):
    _move(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [("metrics", "0008_merge_parallel_work")]

    operations = [migrations.RunPython(forwards, backwards)]
