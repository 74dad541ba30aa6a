"""Security headers on every response: a CSP allowing only the app's own files, HSTS over TLS."""

from __future__ import annotations

import pytest
from django.test import Client

from selcontrol.security import DEFAULT_CSP

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'"
)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/healthz", "/api/v1/openapi.json", "/metrics"])
def test_csp__any_response__allows_only_the_apps_own_origin(client, path):
    assert client.get(path)["Content-Security-Policy"] == EXPECTED_CSP


def test_csp__no_directive__allows_inline_or_eval_or_other_hosts():
    for value in DEFAULT_CSP.values():
        assert "unsafe" not in value and "*" not in value and "http" not in value


def test_csp__console_page__sent(operator_client):
    response = operator_client.get("/")
    assert response.status_code in (200, 302)
    assert response["Content-Security-Policy"] == EXPECTED_CSP


@pytest.mark.django_db
def test_csp__report_only_setting__sends_the_report_only_header(settings):
    settings.SELCONTROL_CSP_REPORT_ONLY = True
    response = Client().get("/login/")
    assert response["Content-Security-Policy-Report-Only"] == EXPECTED_CSP
    assert "Content-Security-Policy" not in response


@pytest.mark.django_db
def test_headers__login_page__nosniff_referrer_permissions_coop_corp_frame(client):
    response = client.get("/login/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]
    assert "geolocation=()" in response["Permissions-Policy"]
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Cross-Origin-Resource-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def _tls_settings(settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.mark.django_db
def test_hsts__served_over_tls__sent(settings):
    _tls_settings(settings)
    response = Client().get("/login/", headers={"X-Forwarded-Proto": "https"})
    assert response["Strict-Transport-Security"] == ("max-age=31536000; includeSubDomains; preload")


@pytest.mark.django_db
def test_hsts__plain_http__not_sent(settings):
    _tls_settings(settings)
    assert "Strict-Transport-Security" not in Client().get("/login/")


@pytest.mark.django_db
def test_api_docs__swagger_from_own_static_files__no_cdn(client):
    html = client.get("/api/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()


def test_headers__static_file__carry_csp_and_nosniff(client):
    response = client.get("/static/css/plotly-csp.css")
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == EXPECTED_CSP


@pytest.mark.django_db
def test_cookies__login_page__csrf_cookie_is_http_only_and_same_site(client):
    response = client.get("/login/")
    cookie = response.cookies["csrftoken"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
