"""How the worker's broker connection is torn down when Redis dies while it is busy (issue 15,
item 9), run as Celery 5.7's consumer runs it, against a real Redis that is killed.

The sequence that ended the worker, and the two guards in selcontrol/broker.py, are explained
there. The first test pins the bug in stock kombu: when it starts failing after an upgrade,
kombu or Celery fixed it and the guards can go (with the xfail-free worker test still passing).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from celery.worker.consumer.consumer import Consumer
from kombu import Connection, Exchange, Queue
from kombu.transport.redis import Transport as StockTransport

from selcontrol.broker import BrokerConnectionClosed
from selcontrol.broker import Channel as GuardedChannel

from .conftest import PrivateRedis

pytestmark = pytest.mark.live

STOCK = "redis"
GUARDED = "selcontrol.broker:Transport"
DETACHED_GUARD_ONLY = "tests.faults.test_broker_close:OnlyDetachedGuardTransport"


class OnlyDetachedGuard(GuardedChannel):
    """The second guard alone: kombu's own close (no tolerance of the lost BRPOP reply)."""

    def close(self):
        super(GuardedChannel, self).close()


class OnlyDetachedGuardTransport(StockTransport):
    Channel = OnlyDetachedGuard


def busy_connection(redis: PrivateRedis, transport: str) -> tuple[Connection, object]:
    """A connection as a busy worker holds it: the task consumer on the default channel has a
    message delivered and not yet acknowledged and a BRPOP in flight for the next one, and the
    remote-control (pidbox) consumer on a second channel listens on its auto-delete fanout queue.
    """
    conn = Connection(redis.url, transport=transport)
    tasks = Queue("celery", Exchange("celery"), "celery")
    with conn.Producer() as producer:
        for n in range(3):
            producer.publish({"n": n}, exchange="celery", routing_key="celery", declare=[tasks])
    channel = conn.default_channel
    channel.basic_qos(0, 2, False)
    delivered: list = []
    conn.Consumer(tasks, channel=channel, callbacks=[lambda _b, m: delivered.append(m)]).consume()
    conn.drain_events(timeout=5)
    assert len(delivered) == 1 and len(channel.qos._delivered) == 1  # taken, not acknowledged
    try:
        conn.drain_events(timeout=0.2)  # the loop asks for the next task while a slot is free
    except TimeoutError:
        pass
    if channel._in_poll is None:
        channel._brpop_start()  # the event loop's BRPOP for the next task, not answered yet
    assert channel._in_poll is not None
    pidbox = conn.channel()
    control = Queue("w1@host.celery.pidbox", Exchange("celery.pidbox", "fanout"), auto_delete=True)
    conn.Consumer(control, channel=pidbox, callbacks=[lambda *_: None], no_ack=True).consume()
    return conn, channel


def lose_connection(conn: Connection) -> None:
    """Celery 5.7's own reaction to a lost broker connection, on a consumer that holds ``conn``."""
    consumer = SimpleNamespace(
        connection=conn,
        pool=None,
        app=SimpleNamespace(
            conf=SimpleNamespace(
                worker_cancel_long_running_tasks_on_connection_loss=True,
                worker_enable_prefetch_count_reduction=False,
            )
        ),
    )
    Consumer.on_connection_error_after_connected(consumer, ConnectionError("Redis went away"))


def test_stock_kombu__redis_dies_while_busy__celerys_close_raises_the_reported_attributeerror(
    private_redis: PrivateRedis,
):
    conn, _ = busy_connection(private_redis, STOCK)
    private_redis.kill()
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'hostname'"):
        lose_connection(conn)


@pytest.mark.parametrize("transport", [GUARDED, DETACHED_GUARD_ONLY])
def test_guarded_transport__redis_dies_while_busy__the_connection_closes_without_error(
    private_redis: PrivateRedis, transport: str
):
    conn, channel = busy_connection(private_redis, transport)
    private_redis.kill()
    lose_connection(conn)  # raises nothing
    if transport == GUARDED:
        assert channel.closed  # the first guard: the close did not stop at the lost BRPOP reply


def test_channel_left_half_closed__closed_again_after_collect__raises_a_connection_error(
    private_redis: PrivateRedis,
):
    conn, channel = busy_connection(private_redis, DETACHED_GUARD_ONLY)
    private_redis.kill()
    conn.collect(socket_timeout=5)  # leaves the default channel half-closed, detaches the transport
    assert not channel.closed and channel.connection.client is None
    with pytest.raises(BrokerConnectionClosed, match="connection of this channel was closed"):
        channel.close()  # what Celery's connection.close() does next; kombu swallows this one
    assert issubclass(BrokerConnectionClosed, channel.connection_errors)


def test_guarded_transport__redis_up__publishes_and_consumes_like_kombus(
    private_redis: PrivateRedis,
):
    with Connection(private_redis.url, transport=GUARDED) as conn:
        queue = conn.SimpleQueue("guarded")
        queue.put({"hello": "world"})
        message = queue.get(timeout=5)
        assert message.payload == {"hello": "world"}
        message.ack()
        assert conn.transport.driver_type == "redis"
        queue.close()


def test_celery_app__redis_broker_url__worker_connection_uses_the_guarded_transport():
    from selcontrol.broker import Transport
    from selcontrol.celery import app

    assert app.conf.broker_url.startswith("redis://")  # the tests' REDIS_URL, as in compose
    with app.connection_for_read() as conn:
        assert isinstance(conn.transport, Transport)
        assert conn.transport.driver_type == "redis"  # Celery's redis-only paths still apply
