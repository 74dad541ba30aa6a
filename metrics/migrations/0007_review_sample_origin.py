"""ReviewSample.origin: what drew a sample (the beat, the management command, the console, the
demo seed), so it is labelled by its real origin. Existing rows are filled from created_by."""

from django.db import migrations, models


def fill_origin(apps, schema_editor):
    ReviewSample = apps.get_model("metrics", "ReviewSample")
    ReviewSample.objects.filter(created_by="celery-beat").update(origin="beat")
    ReviewSample.objects.filter(created_by="manage.py").update(origin="command")


class Migration(migrations.Migration):
    dependencies = [("metrics", "0006_daily_rollups")]

    operations = [
        migrations.AddField(
            model_name="reviewsample",
            name="origin",
            field=models.CharField(
                choices=[
                    ("beat", "Celery beat"),
                    ("command", "manage.py draw_review_sample"),
                    ("console", "the console"),
                    ("demo", "the demo seed"),
                ],
                default="console",
                help_text="What drew it: the beat entry, the management command, or a person",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="reviewsample",
            name="kind",
            field=models.CharField(
                choices=[("scheduled", "Weekly"), ("on_demand", "On demand")], max_length=16
            ),
        ),
        migrations.RunPython(fill_origin, migrations.RunPython.noop),
    ]
