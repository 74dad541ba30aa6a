"""Bearer-token authentication for the API, with one scope per operation."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import HttpError
from ninja.security import HttpBearer

from .models import ApiToken

LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiError(HttpError):
    """An HTTP error whose message is shown to the caller as ``{"error": message}``."""

    def __init__(self, status_code: int, message: str):
        super().__init__(status_code, message)
        self.message = message


class AuthenticatedRequest(HttpRequest):
    """The request of an operation guarded by a :class:`TokenAuth`: django-ninja stores what the
    authenticator returned as ``request.auth`` (``request.auth = result`` in ninja.operation,
    untyped there), and ``TokenAuth.authenticate`` returns the caller's :class:`ApiToken`. For view
    annotations only; ninja skips the ``request`` parameter when it reads a view's signature."""

    auth: ApiToken


class TokenAuth(HttpBearer):
    """``Authorization: Bearer <token>``: 401 when missing, unknown or revoked; 403 when the
    token lacks this operation's scope."""

    def __init__(self, scope: str):
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> ApiToken:
        header = request.headers.get("Authorization", "")
        if not header:
            raise ApiError(401, "Send your API token as 'Authorization: Bearer <token>'.")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise ApiError(401, "The Authorization header must be 'Bearer <token>'.")
        return self.authenticate(request, raw.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        obj = ApiToken.objects.filter(token_hash=ApiToken.hash(token)).first()
        if obj is None or obj.revoked_at is not None:
            raise ApiError(
                401, "This API token is unknown or revoked; ask an operator for a new one."
            )
        if not obj.has_scope(self.scope):
            raise ApiError(
                403,
                f"The token {obj.name!r} lacks the {self.scope} scope this call needs; "
                f"it has {', '.join(obj.scopes) or 'no scopes'}.",
            )
        now = timezone.now()
        if obj.last_used_at is None or now - obj.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=obj.pk).update(last_used_at=now)
        return obj


CONFIG_READ = TokenAuth(ApiToken.Scope.CONFIG_READ)
EVENTS_WRITE = TokenAuth(ApiToken.Scope.EVENTS_WRITE)
ROLLOUT_OPERATE = TokenAuth(ApiToken.Scope.ROLLOUT_OPERATE)
