"""kombu's Redis transport with two guards so the Celery worker survives a broker outage.

Selected by ``CELERY_BROKER_TRANSPORT`` for ``redis://`` broker URLs (selcontrol/settings.py).
Everything else is kombu's own Redis transport (kombu 5.7.0, the newest release; celery 5.7.0).

Why (issue 15, item 9). With the worker busy, killing Redis sometimes ended it with
``Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")``. What
happens, step by step, in Celery's ``Consumer.on_connection_error_after_connected``:

1. ``Connection.collect()`` closes the connection's default channel (the one the task consumer
   uses). When a ``BRPOP`` is in flight, ``Channel.close()`` first reads its reply; with Redis
   gone that raises ``ConnectionError`` and the close stops there: the channel is left
   half-closed (``closed`` still False, its consumers and its unacknowledged deliveries still
   registered). ``Connection.maybe_close_channel`` swallows the connection error.
2. ``Transport.close_connection()`` then closes the transport's channels one by one, and stops
   at the first one that raises: the remote-control (pidbox) channel's close deletes its
   auto-delete fanout queue, which raises ``ConnectionError`` too. The default channel can be
   left half-closed.
3. ``collect()`` detaches the transport (``transport.client = None``) but keeps the connection's
   ``_default_channel``.
4. Celery 5.7 then calls ``connection.close()``, which closes ``_default_channel`` again. Being
   not ``closed``, the close goes on to restore its unacknowledged messages (there are some when
   the worker is busy: tasks are acknowledged late), which rebuilds a Redis pool from
   ``transport.client``: None. ``_connparams`` raises ``AttributeError``, which is not one of the
   connection errors kombu or Celery swallow, so it ends the worker.

The guards, each enough on its own (tests/test_broker.py drives both against a real Redis):

* ``Channel.close`` finishes the close when reading the in-flight ``BRPOP`` reply fails with a
  connection error (the reply is lost with the connection, and ``_brpop_read`` has already
  dropped the socket): step 1 no longer leaves a half-closed channel.
* A channel whose transport was detached raises a ``ConnectionError`` (which it is) when it
  needs a new Redis pool, instead of an ``AttributeError`` on ``None``: whatever leaves a channel
  half-closed, closing it later is a connection error that kombu and Celery already handle.

Messages a worker had taken but not acknowledged when the connection died stay in Redis's
``unacked`` hash (restoring them needs the broker that just went away); kombu puts them back in
the queue after the visibility timeout, as it does for a worker that was killed.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis


class BrokerConnectionClosed(kombu_redis.redis.exceptions.ConnectionError):
    """A channel of a closed broker connection was asked to talk to Redis."""


class Channel(kombu_redis.Channel):
    def close(self):
        if self._in_poll and not self.closed:
            try:
                self._brpop_read()
            except kombu_redis.Empty:
                pass
            except self.connection_errors:
                # Redis went away with a BRPOP in flight: its reply is lost (_brpop_read dropped
                # the socket and cleared _in_poll). Go on closing instead of leaving the channel
                # half-closed for a later close with no transport (step 1 in the module doc).
                pass
        super().close()

    def _connparams(self, asynchronous=False):
        if self.connection is None or self.connection.client is None:
            raise BrokerConnectionClosed(
                "the broker connection of this channel was closed; it cannot reach Redis again"
            )
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
