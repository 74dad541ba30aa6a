"""A Redis cache that degrades to "always a miss" while Redis is unreachable.

Everything selcontrol keeps in the cache can be rebuilt from PostgreSQL (the config document, the
reference stamps) or is best-effort (rate-limit windows), so a Redis outage should make requests
slower, not fail them. Django's RedisCache raises on a refused or timed-out connection; this
subclass turns that into a miss (``get``), a no-op (``set``, ``delete``) or "not stored"
(``add``), logs a warning at most once a minute, and then leaves Redis alone for
``RETRY_SECONDS`` (a small circuit breaker), so each request does not wait for the socket
timeout again. ``incr``/``decr`` still raise (a counter has no sensible default); callers that
count (the rate limiter) handle that themselves.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger("selcontrol.cache")

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class ResilientRedisCache(RedisCache):
    RETRY_SECONDS = 5.0
    _last_warning = 0.0

    def __init__(self, server: str, params: dict[str, Any]):
        super().__init__(server, params)
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + self.RETRY_SECONDS
        if now - ResilientRedisCache._last_warning > 60:
            ResilientRedisCache._last_warning = now
            logger.warning(
                "the cache (Redis) is unreachable (%s); serving without it for now",
                exc.__class__.__name__,
            )

    def _guard(self, default: Any, method, *args: Any, **kwargs: Any) -> Any:
        if not self.available:
            return default
        try:
            return method(*args, **kwargs)
        except UNREACHABLE as exc:
            self._failed(exc)
            return default

    def _guard_raise(self, method, *args: Any, **kwargs: Any) -> Any:
        if not self.available:
            raise RedisConnectionError("the cache is marked unreachable for a few seconds")
        try:
            return method(*args, **kwargs)
        except UNREACHABLE as exc:
            self._failed(exc)
            raise

    def get(self, key, default=None, version=None):
        return self._guard(default, super().get, key, default, version)

    def get_many(self, keys, version=None):
        return self._guard({}, super().get_many, keys, version)

    def has_key(self, key, version=None):
        return self._guard(False, super().has_key, key, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._guard(None, super().set, key, value, timeout, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._guard(list(data), super().set_many, data, timeout, version)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._guard(False, super().add, key, value, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._guard(False, super().touch, key, timeout, version)

    def delete(self, key, version=None):
        return self._guard(False, super().delete, key, version)

    def delete_many(self, keys, version=None):
        return self._guard(None, super().delete_many, keys, version)

    def incr(self, key, delta=1, version=None):
        return self._guard_raise(super().incr, key, delta, version)

    def clear(self):
        return self._guard(False, super().clear)
