"""Defaults: the emoji sentiment map, the correction patterns and the first model price.

Positive: the bot's 👍 ❤️ 😀 🔥 and close relatives; negative: 👎 and the usual displeasure.
Patterns are case-insensitive regular expressions searched in the follow-up's text (see
docs/metrics.md for what people write when they correct a bot). Editable in the admin.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

POSITIVE = ["👍", "❤️", "😀", "🔥", "😂", "🤣", "😄", "😁", "😊", "🥰", "😍", "💯", "🎉", "🙏", "👏",
            "✅", "⭐", "🌟", "💖", "💕", "🙌", "👌", "😆", "🤩", "💜", "💙", "💚", "🧡", "♥️"]
NEGATIVE = ["👎", "😕", "😡", "❌", "😠", "🤬", "😞", "😒", "🙄", "💩", "🤮", "😤", "😣", "🤦",
            "🤦‍♂️", "🤦‍♀️", "⛔", "🚫", "😬", "🤨", "😑"]
NEUTRAL = ["🤔", "👀", "😮", "😲", "🫡", "🤷"]

PATTERNS = [
    (r"^\W*actually\b", "the guide's \"actually...\""),
    (
        r"^\W*no\b(?![\s,.!]*(?:worries|problem|probs?|thanks|thank|way|idea|need|rush|biggie|clue|prob)\b)(?:[\s,.!]|$)",
        "the guide's \"no...\" (no, / no. / no it's...), not \"no worries\" or \"no thanks\"",
    ),
    (r"^\W*nope\b", ""),
    (r"^\W*wrong\b", ""),
    (r"\bthat'?s (?:wrong|incorrect|not (?:right|true|correct|it|what i (?:asked|meant|said)))", ""),
    (r"\b(?:that|this|it) is (?:wrong|incorrect|not (?:right|true|correct))", ""),
    (r"\byou'?re (?:wrong|mistaken|incorrect)\b", ""),
    (r"\byou are (?:wrong|mistaken|incorrect)\b", ""),
    (r"\bnot true\b", ""),
    (r"\bincorrect\b", ""),
    (r"\bi meant\b", "the user restates: the reply missed"),
    (r"\bi said\b", "the user repeats themselves"),
    (r"\bthat'?s not what i\b", ""),
    (r"\bmisunderst(?:ood|and)\b", ""),
    (r"\b(?:hallucinat|made that up|making (?:that|things|stuff) up|doesn'?t exist)", "likely hallucination"),
    (r"^\W*(?:um+|uh+|erm+),? no\b", ""),
    (r"\bwhere did you get that\b", ""),
    (r"\bsource\?", ""),
]


def forwards(apps, schema_editor):
    EmojiSentiment = apps.get_model("metrics", "EmojiSentiment")
    for emoji, value in [(e, 1) for e in POSITIVE] + [(e, -1) for e in NEGATIVE] + [(e, 0) for e in NEUTRAL]:
        EmojiSentiment.objects.get_or_create(emoji=emoji, defaults={"sentiment": value})
    CorrectionPattern = apps.get_model("metrics", "CorrectionPattern")
    for pattern, note in PATTERNS:
        CorrectionPattern.objects.get_or_create(pattern=pattern, defaults={"note": note})
    ModelPrice = apps.get_model("metrics", "ModelPrice")
    ModelPrice.objects.get_or_create(
        model="anthropic/claude-3.5-sonnet",
        valid_from=datetime(2024, 6, 20, tzinfo=UTC),
        defaults={
            "input_per_million": Decimal("3"),
            "output_per_million": Decimal("15"),
            "cached_per_million": Decimal("0.30"),
            "note": "Deployment guide: Claude Sonnet 3.5 at $3/M input tokens",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("metrics", "0001_events_rollups_prices")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
