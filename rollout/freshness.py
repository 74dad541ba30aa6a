"""How current a console fragment is: the *console stamp*.

Every change to what the console shows writes an audit row in the change's own transaction
(``rollout.services``), so the id of the newest audit row names the state a fragment was drawn
from. Each section that refreshes itself carries it (``data-console-stamp``) and every change
answer sends the stamp after the change (``X-Console-Stamp``); ``static/js/console.js`` then
re-fetches any section older than the newest change answered on the page. That closes the gaps
of the ``rollout-changed`` event alone: a section being swapped in is not listening yet, and a
change answer whose element was replaced meanwhile triggers its event where nobody hears it.
A section's own refresh answers its stamp too (``tell_stamp``): a change made elsewhere reaches
every section once one of them has seen it.

Read the stamp *before* the state it describes: a change committed in between then makes the
fragment look older than it is (one extra fetch), never newer (a stale fragment kept). Changes
to one rollout are serialized by its row lock, so their audit ids follow their commit order.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django_htmx.http import trigger_client_event

from .models import AuditEntry

HEADER = "X-Console-Stamp"
CHANGED = "rollout-changed"
_KEPT = "_console_stamp"  # the request attribute the stamp is kept in


def stamp(request: HttpRequest, *, fresh: bool = False) -> int:
    """The console stamp for this request: read once (or again with ``fresh``, after a
    change) and kept on the request, so every fragment of one answer carries the same one."""
    kept: int | None = getattr(request, _KEPT, None)
    if fresh or kept is None:
        newest = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()
        kept = newest or 0
        setattr(request, _KEPT, kept)  # an attribute of our own: HttpRequest does not declare it
    return kept


def tell_stamp(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Mark ``response`` as a fragment drawn at the request's stamp, without the event: a stamp
    newer than any the page has heard of is a change made elsewhere (another operator, the API,
    a guardrail), seen by a section's own refresh (the status section's every minute), and the
    page's other sections older than it refresh in turn."""
    response[HEADER] = str(stamp(request))
    return response


def announce_change(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Mark ``response`` as the answer to a change: the ``rollout-changed`` event for the
    sections listening, and the stamp after the change for those that were not."""
    trigger_client_event(response, CHANGED)
    response[HEADER] = str(stamp(request))
    return response
