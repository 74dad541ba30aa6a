"""The app's URLconf plus one view that fails with secrets in its exception (for error-page and
error-log tests)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from selcontrol.urls import urlpatterns as app_urlpatterns


def fail_with_secrets(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(
        f"cannot handle {request.headers.get('Authorization')} "
        f"password={request.POST.get('password')}"
    )


urlpatterns = [path("test-failure/", fail_with_secrets), *app_urlpatterns]
