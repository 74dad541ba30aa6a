"""The sample-ratio check of a rollout: does the traffic the bots served match the rule?

It compares, per variant, the fleet's decisions (``rollout.models.ExposureCount``, from the
clients' reports) and the replies recorded (``metrics.models.ResponseEvent``) with what the rule
gives the channels that had traffic. It reads both domains, so it lives in metrics (which reads
rollout; rollout never reads metrics): the pure parts (the chi-squared test, the rule's shares,
reply consistency) stay in ``rollout.fleet``, this module only gathers the counts. Shown by the
console's fleet panel (``selcontrol.console.fleet_views``); docs/fleet.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Sum
from django.utils import timezone

from rollout.fleet import (
    SrmResult,
    ack_timeout,
    change_status,
    latest_change,
    reply_consistency,
    rule_shares,
    srm_test,
)
from rollout.models import ExposureCount, Rollout

from .models import ResponseEvent


@dataclass
class SampleRatio:
    """The sample-ratio check of one rollout under its current rule."""

    rollout: Rollout
    since: datetime
    decisions: SrmResult
    replies: SrmResult
    wrong_replies: int
    wrong_channels: int
    expected_from: str  # "traffic" (channel by channel) or "percentages"

    @property
    def mismatch(self) -> bool:
        return self.decisions.mismatch or self.replies.mismatch


def sample_ratio(rollout: Rollout, now: datetime | None = None) -> SampleRatio:
    """Decisions (from the client reports) and replies (response events) per variant under the
    rollout's current rule, each against what the rule gives the channels that had traffic.

    Why not just the percentage: the unit of assignment is the channel, and traffic per channel
    is very uneven, so at 20% the treatment may well carry 5% or 40% of the messages. The
    expected share of a variant is therefore the traffic of the channels the rule (percentage,
    nested simplified split, overrides, kill switch) sends to it, over the replies since the
    change; with no replies yet it falls back to the percentages (equal traffic per channel).

    - Decisions: the fleet's exposure counts at the current rule revision (decisions made on an
      older rule are left out: they are another experiment) against those traffic shares.
    - Replies: replies recorded per variant against the replies the rule gives each variant,
      channel by channel; a bot that serves some channel the wrong variant (a stale config, or
      wiring that ignores the client) moves replies between cells and fails the test.

    The window starts when the current rule reached the whole fleet (its ChangeAck, or the last
    acknowledgement of the instances that were running then), or SELCONTROL_ACK_TIMEOUT_SECONDS
    after the change while a live instance still lacks it.
    """
    now = now or timezone.now()
    rule = rollout.to_rule()
    change = latest_change(rollout)
    if change is not None:
        status = change_status(change, now)
        if status.settled is not None:
            since = status.settled.all_acked_at
        elif status.waiting:  # someone is behind: give it the timeout, then count what it does
            since = change.created_at + timedelta(seconds=ack_timeout())
        else:  # every live instance has it (those started since then do not move the window)
            since = change.created_at + timedelta(seconds=status.seconds or 0.0)
    else:
        since = rollout.created_at
    since = min(since, now)
    replies = list(
        ResponseEvent.objects.filter(rollout_key=rollout.key, ts__gte=since)
        .values("channel_id", "variant")
        .annotate(n=Count("id"))
        .values_list("channel_id", "variant", "n")
    )
    traffic: dict[str, int] = {}
    for channel, _variant, n in replies:
        traffic[channel] = traffic.get(channel, 0) + n
    shares = rule_shares(rule, traffic, now)
    decided = dict(
        ExposureCount.objects.filter(rollout_key=rollout.key, rule_revision=rollout.revision)
        .values("variant")
        .annotate(n=Sum("count"))
        .values_list("variant", "n")
    )
    observed, expected_counts, wrong_replies, wrong_channels = reply_consistency(rule, replies, now)
    total_expected = sum(expected_counts.values())
    reply_shares = (
        {v: n / total_expected for v, n in expected_counts.items()} if total_expected else shares
    )
    return SampleRatio(
        rollout=rollout,
        since=since,
        decisions=srm_test("decisions", decided, shares),
        replies=srm_test("replies", observed, reply_shares),
        wrong_replies=wrong_replies,
        wrong_channels=wrong_channels,
        expected_from="traffic" if traffic else "percentages",
    )
