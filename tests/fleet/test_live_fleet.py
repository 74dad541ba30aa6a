"""Several real clients (threads in this process and one subprocess) against a live gunicorn
server: reports, acknowledgement of an emergency rollback with one instance frozen on purpose,
exposures counted once, and the sample-ratio check on simulated traffic."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from metrics import sample_ratio
from metrics.guardrails.models import Alert
from metrics.models import ResponseEvent
from rollout import fleet
from rollout.models import ChangeAck, ExposureCount, Instance, Rollout, UnackedInstance
from selcontrol_client import SelControl
from tests.client.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]

SUBPROCESS_BOT = textwrap.dedent(
    """
    import sys
    from selcontrol_client import SelControl

    url, token, instance_id = sys.argv[1:4]
    client = SelControl(url, token, instance_id=instance_id, report_interval=1.0,
                        config_cache=None, spool_dir=None)
    client.wait_until_synced(10)
    for i in range(100):
        client.variant("prompts_v2", str(10**17 + i))
    print("ready", flush=True)
    sys.stdin.read()  # run until the test closes our stdin
    client.close(timeout=2)
    """
)


@pytest.fixture
def start_client(fleet_server, bot_token, client_kwargs, tmp_path):
    clients: list[SelControl] = []

    def factory(instance_id: str, **kw) -> SelControl:
        files = {
            "config_cache": tmp_path / f"{instance_id}.json",
            "spool_dir": tmp_path / f"spool-{instance_id}",
            "backoff_max": 1.0,
        }
        client = SelControl(
            fleet_server.url,
            bot_token,
            instance_id=instance_id,
            report_interval=1.0,
            **{**files, **kw},
        )
        clients.append(client)
        assert client.wait_until_synced(10)
        return client

    yield factory
    for client in clients:
        client.close(timeout=2)


@pytest.fixture
def subprocess_bot(fleet_server, bot_token):
    procs: list[subprocess.Popen] = []

    def factory(instance_id: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", SUBPROCESS_BOT, fleet_server.url, bot_token, instance_id],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    yield factory
    for proc in procs:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _serving(revision: int) -> int:
    return Instance.objects.filter(revision=revision).count()


def test_rollback__one_instance_frozen__acked_by_the_others_and_the_frozen_one_flagged(
    live_rollout, chatops, start_client, subprocess_bot
):
    start_client("thread-a")
    start_client("thread-b")
    frozen = start_client("frozen", push=False, poll_interval=3600)  # never syncs again
    subprocess_bot("subprocess-c")
    assert wait_until(lambda: _serving(live_rollout.revision) == 4, 10)

    response = chatops.post("/api/v1/rollouts/prompts_v2/rollback", json={"reason": "fleet test"})
    assert response.status_code == 200, response.text
    entry = fleet.latest_change(Rollout.objects.get(key="prompts_v2"))

    assert wait_until(lambda: fleet.change_status(entry).acked == 3, 10, step=0.05)
    assert wait_until(lambda: UnackedInstance.objects.filter(audit_entry=entry).exists(), 10, 0.1)
    status = fleet.change_status(entry)
    print(f"\nrollback acknowledged by {status.acked} of {status.live} in {status.seconds:.2f} s")
    assert (status.acked, status.live) == (3, 4)
    assert [r.instance.instance_id for r in status.overdue] == ["frozen"]
    flag = UnackedInstance.objects.get(audit_entry=entry)
    assert flag.instance_id == "frozen" and flag.revision == live_rollout.revision
    assert Alert.objects.filter(pk=flag.alert_id, rollout__key="prompts_v2").exists()
    assert not ChangeAck.objects.filter(audit_entry=entry).exists()

    frozen.close(timeout=1)  # gone: once stale it no longer counts, and the change settles
    assert wait_until(lambda: ChangeAck.objects.filter(audit_entry=entry).exists(), 15, 0.1)
    ack = ChangeAck.objects.get(audit_entry=entry)
    assert (ack.acked, ack.live) == (3, 3)


def _traffic(seed: int, n: int = 150) -> list[str]:
    """Messages (one channel id each) with uneven traffic per channel."""
    rng = random.Random(seed)
    channels = [str(10**17 + rng.randrange(10**17)) for _ in range(n)]
    weights = [rng.paretovariate(1.3) for _ in channels]
    return rng.choices(channels, weights, k=3000)


def _reply(client: SelControl, channel: str, variant: str, n: int) -> None:
    client.record_response(
        channel_id=channel,
        message_id=f"{channel}-{n}",
        variant=variant,
        model="claude-sonnet-4-5",
        input_tokens=100,
        output_tokens=50,
        latency_ms=800,
    )


def _sum_exposures(revision: int) -> int:
    return sum(ExposureCount.objects.filter(rule_revision=revision).values_list("count", flat=True))


def test_sample_ratio__bots_follow_the_rule__passes_then_a_miswired_bot__fails(
    live_rollout, start_client
):
    bots = [start_client("srm-a"), start_client("srm-b")]
    for n, channel in enumerate(_traffic(seed=5)):
        bot = bots[n % 2]
        _reply(bot, channel, bot.prompt_variant(channel), n)
    assert all(bot.flush(10) for bot in bots)
    assert wait_until(lambda: _sum_exposures(live_rollout.revision) == 3000, 10, 0.1)
    assert ResponseEvent.objects.count() == 3000
    result = sample_ratio.sample_ratio(Rollout.objects.get(key="prompts_v2"))
    assert result.expected_from == "traffic"
    assert (result.decisions.verdict, result.replies.verdict) == ("ok", "ok")
    assert result.wrong_replies == 0

    miswired = start_client("srm-miswired")  # decides, then replies with a variant of its own
    rng = random.Random(9)
    for n, channel in enumerate(_traffic(seed=6, n=100)[:1500]):
        miswired.prompt_variant(channel)
        _reply(miswired, channel, "v2_full" if rng.random() < 0.5 else "v1", 10_000 + n)
    assert miswired.flush(10)
    result = sample_ratio.sample_ratio(Rollout.objects.get(key="prompts_v2"))
    assert result.replies.verdict == "mismatch" and result.replies.p_value < 0.001
    assert result.wrong_replies > 0


def test_exposures__reported_again_and_again__counted_once(live_rollout, start_client):
    bot = start_client("counting")
    for i in range(500):
        bot.variant("prompts_v2", str(10**17 + i % 50))
    assert wait_until(lambda: _sum_exposures(live_rollout.revision) == 500, 10, 0.1)
    reports = Instance.objects.get(instance_id="counting").reports
    assert wait_until(
        lambda: Instance.objects.get(instance_id="counting").reports >= reports + 2, 10, 0.1
    )
    assert _sum_exposures(live_rollout.revision) == 500


def test_async_client__reports_revision_and_decisions(
    live_rollout, fleet_server, bot_token, tmp_path
):
    import asyncio

    from selcontrol_client import AsyncSelControl

    def reported() -> tuple[int, int]:
        instance = Instance.objects.filter(instance_id="async-bot").first()
        return (instance.revision if instance else 0, _sum_exposures(live_rollout.revision))

    async def run() -> tuple[int, int]:
        bot = AsyncSelControl(
            fleet_server.url,
            bot_token,
            instance_id="async-bot",
            report_interval=1.0,
            config_cache=tmp_path / "config.json",
            spool_dir=None,
        )
        await bot.start()
        try:
            assert await bot.wait_until_synced(10)
            for i in range(50):
                bot.prompt_variant(str(10**17 + i))
            for _ in range(100):  # a bounded wait for the next report
                seen = await asyncio.to_thread(reported)
                if seen == (live_rollout.revision, 50):
                    return seen
                await asyncio.sleep(0.1)
            return seen
        finally:
            await bot.close(timeout=2)

    # In a thread of its own: Playwright's sync API (the e2e tests) leaves an event loop running
    # in the main thread for the rest of the session, and asyncio.run refuses to nest.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, run()).result() == (live_rollout.revision, 50)
