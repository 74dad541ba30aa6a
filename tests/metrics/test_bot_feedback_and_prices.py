"""The Sel bot's feedback rule and its real model id (migration 0007): reactions count as the
bot's ``on_reaction_add`` counts them, and a reply from the bot's default model is priced."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from metrics.ingest.intake import record_events
from metrics.models import EmojiSentiment, ModelPrice, ReactionEvent, ResponseEvent
from metrics.reference import OTHER_EMOJI, Price, Reference, model_key, normalise_emoji

from .conftest import reaction, response, totals

pytestmark = pytest.mark.django_db

BOT_POSITIVE = {"👍", "❤️", "😀", "🔥"}


def bot_sentiment(emoji: str) -> int:
    """sel_bot/discord_client.py, on_reaction_add, compared after the skin tone / variation
    selector normalisation the default applies."""
    return 1 if normalise_emoji(emoji) in {normalise_emoji(e) for e in BOT_POSITIVE} else -1


@pytest.mark.parametrize(
    "emoji",
    [
        "👍",
        "❤️",
        "😀",
        "🔥",
        "👍🏽",
        "👍🏿",
        "❤",
        "😂",
        "🤔",
        "👎",
        "🙏",
        "🤦‍♂️",
        "<:sel:123456789012345678>",
        "sel_wave",
    ],
)
def test_default_sentiment__any_emoji__same_as_the_bots_rule(emoji):
    record_events([response("r", message_id="m"), reaction("m", emoji)])
    assert ReactionEvent.objects.get().sentiment == bot_sentiment(emoji)


def test_default_sentiment__map__the_four_and_every_other_row_only():
    assert dict(EmojiSentiment.objects.values_list("emoji", "sentiment")) == {
        "👍": 1,
        "❤️": 1,
        "😀": 1,
        "🔥": 1,
        OTHER_EMOJI: -1,
    }


def test_other_emoji_row__set_to_neutral__unlisted_emoji_neutral_again():
    EmojiSentiment.objects.filter(emoji=OTHER_EMOJI).update(sentiment=0)
    EmojiSentiment.objects.create(emoji="👎", sentiment=-1)  # a deliberate edit in the admin
    record_events(
        [
            response("r", message_id="m"),
            reaction("m", "🤔", user_id="a"),
            reaction("m", "👎", user_id="b"),
            reaction("m", "👍🏽", user_id="c"),
        ]
    )
    figures = totals()["v1"]
    assert (
        figures["reactions_positive"],
        figures["reactions_negative"],
        figures["reactions_neutral"],
    ) == (1, 1, 1)


def test_bot_model_id__reply__priced_at_claude_3_5_sonnet_rates():
    record_events(
        [
            response(
                "r",
                message_id="m",
                model="anthropic/claude-3-5-sonnet-20241022",
                input_tokens=1_000_000,
                output_tokens=100_000,
            )
        ]
    )
    reply = ResponseEvent.objects.get()
    assert (reply.unpriced, reply.cost_usd) == (False, Decimal("4.5"))


@pytest.mark.parametrize(
    "model",
    ["anthropic/claude-3.5-sonnet:beta", "claude-3-5-sonnet-latest", "Anthropic/Claude-3.5-Sonnet"],
)
def test_model_written_another_way__reply__priced_as_that_model(model):
    record_events(
        [response("r", message_id="m", model=model, input_tokens=1_000_000, output_tokens=0)]
    )
    reply = ResponseEvent.objects.get()
    assert (reply.unpriced, reply.cost_usd) == (False, Decimal("3"))


def test_model_of_another_family__reply__unpriced():
    record_events([response("r", message_id="m", model="anthropic/claude-3.7-sonnet")])
    assert ResponseEvent.objects.get().unpriced


def test_model_key__spellings_of_one_model__one_key():
    assert (
        len(
            {
                model_key(m)
                for m in [
                    "anthropic/claude-3-5-sonnet-20241022",
                    "anthropic/claude-3.5-sonnet",
                    "claude-3-5-sonnet",
                    "anthropic/claude-3.5-sonnet:beta",
                ]
            }
        )
        == 1
    )
    assert model_key("anthropic/claude-3.7-sonnet") != model_key("anthropic/claude-3.5-sonnet")


def test_alias__two_spellings_with_different_prices__prices_nothing():
    t = datetime(2024, 1, 1, tzinfo=UTC)
    ref = Reference(
        prices={
            "vendor/m-1": [Price(t, Decimal(1), Decimal(1), Decimal(0))],
            "m-1-20240101": [Price(t, Decimal(2), Decimal(2), Decimal(0))],
        }
    )
    assert ref.price_at("vendor/m-1", t) is not None
    assert ref.price_at("other/m-1:beta", t) is None


def test_exact_row__beside_an_alias__wins():
    ModelPrice.objects.create(
        model="anthropic/claude-3.5-sonnet:beta",
        valid_from=datetime(2024, 1, 1, tzinfo=UTC),
        input_per_million=Decimal(7),
        output_per_million=Decimal(0),
    )
    record_events(
        [
            response(
                "r",
                message_id="m",
                model="anthropic/claude-3.5-sonnet:beta",
                input_tokens=1_000_000,
                output_tokens=0,
            )
        ]
    )
    assert ResponseEvent.objects.get().cost_usd == Decimal("7")
