"""The Celery application. Settings come from Django's CELERY_* settings.

With no broker configured (the quick start), CELERY_TASK_ALWAYS_EAGER is on and tasks run
in-process; with REDIS_URL / CELERY_BROKER_URL set, a real worker and beat run them.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selcontrol.settings")

app = Celery("selcontrol")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
