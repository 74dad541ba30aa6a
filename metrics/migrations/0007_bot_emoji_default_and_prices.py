"""The Sel bot's own feedback rule and its real model id.

Emoji: the bot counts 👍 ❤️ 😀 🔥 as positive and every other emoji as negative
(``sel_bot/discord_client.py``, ``on_reaction_add``). The default map becomes exactly that: the
four positive rows plus the ``*`` row ("every other emoji", custom emoji included) at -1. The
rows 0002 seeded with other classifications are removed when they still hold their seeded value
(a row an admin changed is kept). Skin tones and variation selectors are ignored when looking an
emoji up (metrics.reference.normalise_emoji), so 👍🏽 counts as 👍. Another classification is a
deliberate edit in the admin (e.g. ``*`` set to neutral, or rows added back).

Prices: the bot's default model is OpenRouter's ``anthropic/claude-3-5-sonnet-20241022`` (Claude
3.5 Sonnet, October 2024 snapshot: $3 / $15 / $0.30 cached per million tokens).
"""

from datetime import UTC, datetime
from decimal import Decimal
from importlib import import_module

from django.db import migrations

BOT_POSITIVE = ["👍", "❤️", "😀", "🔥"]
OTHER = "*"
# What 0002 seeded, read from it so the two lists cannot drift apart.
_seed = import_module("metrics.migrations.0002_default_feedback_and_prices")
SEEDED = (
    [(e, 1) for e in _seed.POSITIVE if e not in BOT_POSITIVE]
    + [(e, -1) for e in _seed.NEGATIVE]
    + [(e, 0) for e in _seed.NEUTRAL]
)

BOT_MODEL = "anthropic/claude-3-5-sonnet-20241022"
BOT_MODEL_FROM = datetime(2024, 10, 22, tzinfo=UTC)


def forwards(apps, schema_editor):
    EmojiSentiment = apps.get_model("metrics", "EmojiSentiment")
    for emoji, value in SEEDED:
        EmojiSentiment.objects.filter(emoji=emoji, sentiment=value).delete()
    for emoji in BOT_POSITIVE:
        EmojiSentiment.objects.update_or_create(emoji=emoji, defaults={"sentiment": 1})
    EmojiSentiment.objects.get_or_create(emoji=OTHER, defaults={"sentiment": -1})
    ModelPrice = apps.get_model("metrics", "ModelPrice")
    ModelPrice.objects.get_or_create(
        model=BOT_MODEL,
        valid_from=BOT_MODEL_FROM,
        defaults={
            "input_per_million": Decimal("3"),
            "output_per_million": Decimal("15"),
            "cached_per_million": Decimal("0.30"),
            "note": "The Sel bot's default OPENROUTER_MAIN_MODEL (Claude 3.5 Sonnet, 2024-10-22)",
        },
    )


def backwards(apps, schema_editor):
    EmojiSentiment = apps.get_model("metrics", "EmojiSentiment")
    EmojiSentiment.objects.filter(emoji=OTHER).delete()
    for emoji, value in SEEDED:
        EmojiSentiment.objects.get_or_create(emoji=emoji, defaults={"sentiment": value})
    ModelPrice = apps.get_model("metrics", "ModelPrice")
    ModelPrice.objects.filter(model=BOT_MODEL, valid_from=BOT_MODEL_FROM).delete()


class Migration(migrations.Migration):
    dependencies = [("metrics", "0006_daily_rollups")]

    operations = [migrations.RunPython(forwards, backwards)]
