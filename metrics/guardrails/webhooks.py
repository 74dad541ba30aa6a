"""Where alerts may go, and what of a bot's text may reach them (issue 15).

The webhook URL is checked when an operator saves it and again right before every delivery
(``check_url``), so a name that resolved to a public address when it was saved and to an
internal one later (DNS rebinding) is still refused. A webhook must:

* use ``https://`` (``http://`` only for the internal relays SELCONTROL_ALERT_WEBHOOK_ALLOW_PRIVATE
  admits), carry no user name or password;
* name a host in SELCONTROL_ALERT_WEBHOOK_HOSTS (Discord's and Slack's webhook hosts by default;
  ``*`` admits any host);
* resolve only to public addresses: loopback, private, link-local (the cloud metadata service at
  169.254.169.254), shared, multicast and reserved ranges are refused unless
  SELCONTROL_ALERT_WEBHOOK_ALLOW_PRIVATE is on (a relay inside your network).

``discord_text`` and ``slack_text`` escape what the alert text carries: instance host names and
ids come from reports written with the bot's token, so nothing in them may mention (``@everyone``,
``<!channel>``), format or link.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings


class WebhookRefused(ValueError):
    """A webhook URL alerts must not be sent to; the message is a sentence for the operator."""


def allowed_hosts() -> frozenset[str] | None:
    """The host names a webhook may have (SELCONTROL_ALERT_WEBHOOK_HOSTS, a list, or a
    comma-separated string when a test overrides it); None when any host is admitted (``*``)."""
    raw: object = settings.SELCONTROL_ALERT_WEBHOOK_HOSTS  # a list in settings, a str in tests
    if isinstance(raw, list | tuple):
        raw = ",".join(raw)
    names = {h.strip().lower().rstrip(".") for h in str(raw).split(",") if h.strip()}
    return None if "*" in names else frozenset(names)


def allow_private() -> bool:
    value = settings.SELCONTROL_ALERT_WEBHOOK_ALLOW_PRIVATE
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _address(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(raw.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def check_url(url: str, *, resolve: Callable = socket.getaddrinfo) -> list[str]:
    """Refuse (``WebhookRefused``, a sentence) a URL alerts must not be posted to; return the
    addresses its host resolves to now."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise WebhookRefused("The webhook URL is not a valid URL.") from None
    private_ok = allow_private()
    if parts.scheme not in ("https", "http"):
        raise WebhookRefused("The webhook URL must start with https://.")
    if parts.scheme == "http" and not private_ok:
        raise WebhookRefused("The webhook URL must use https:// (Discord and Slack both do).")
    if parts.username or parts.password:
        raise WebhookRefused("The webhook URL must not carry a user name or password.")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise WebhookRefused("The webhook URL has no host name.")
    hosts = allowed_hosts()
    if hosts is not None and host not in hosts:
        raise WebhookRefused(
            f"Alerts go to Discord or Slack webhooks only ({', '.join(sorted(hosts))}); "
            f"{host} is not one. An administrator can admit it with "
            "SELCONTROL_ALERT_WEBHOOK_HOSTS."
        )
    try:
        default_port = 443 if parts.scheme == "https" else 80
        found = resolve(host, port or default_port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        message = f"The webhook's host {host} does not resolve; check the URL."
        raise WebhookRefused(message) from None
    addresses = sorted({info[4][0] for info in found})
    for raw in addresses:
        ip = _address(raw)
        if not ip.is_global and not private_ok:
            raise WebhookRefused(
                f"The webhook's host {host} resolves to {ip}, an internal address; alerts go "
                "to public webhooks only."
            )
    return addresses


def mask_url(url: str) -> str:
    """The URL for the audit log: a webhook URL's path ends in its secret token, so only its
    last 4 characters are kept."""
    parts = urlsplit(url)
    if not parts.scheme:
        return ""
    path, _, secret = parts.path.rpartition("/")
    shown = f"…{secret[-4:]}" if len(secret) > 4 else "…"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{path}/{shown}"


# -- escaping what an alert says -----------------------------------------------------------------

_URL_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*):(//)")
_DISCORD_MARKDOWN_RE = re.compile(r"([\\*_~`|>\[\]()<#])")
ZWSP = "\u200b"


def defang_urls(text: str) -> str:
    """``http://x`` becomes ``http:\u200b//x``: readable, and no client turns it into a link."""
    return _URL_RE.sub(rf"\1:{ZWSP}\2", text)


def discord_text(text: str) -> str:
    """Text that Discord shows as written: markdown and link syntax escaped, no mention
    (``@everyone``, ``@here``, ``<@id>``) and no bare link. The payload also sends
    ``allowed_mentions: {"parse": []}``, so even a missed mention would not ping."""
    text = defang_urls(text)
    text = _DISCORD_MARKDOWN_RE.sub(r"\\\1", text)
    return text.replace("@", f"@{ZWSP}")


def slack_text(text: str) -> str:
    """Text for Slack's mrkdwn: ``&``, ``<`` and ``>`` escaped (Slack's own rule: no
    ``<!everyone>``, ``<@U…>`` or ``<url|label>`` can be formed), and no bare link."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return defang_urls(text)
