import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selcontrol.settings")
from selcontrol.input_guard import ChunkedBodyMiddleware  # noqa: E402  (after settings)

application = ChunkedBodyMiddleware(get_wsgi_application())
