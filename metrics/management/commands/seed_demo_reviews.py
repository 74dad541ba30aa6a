"""Demo review state for the quick start (metrics.reviews.demo); never run it in production.

manage.py seed_demo_reviews   # last week's sample: 30 graded by reviewer2, pairs by reviewer3
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from metrics.reviews import demo as demo_reviews
from metrics.reviews import services as reviews


class Command(BaseCommand):
    help = "Draw last week's review sample and have the demo reviewers grade part of it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rollout", default=None, help="Rollout key (default: the default)")

    def handle(self, *args, **options) -> None:
        key = options["rollout"] or settings.SELCONTROL_DEFAULT_ROLLOUT
        try:
            sample, saved = demo_reviews.seed(rollout_key=key)
        except (demo_reviews.MissingGraders, reviews.ReviewError) as exc:
            raise CommandError(str(exc)) from None
        progress = reviews.sample_progress(sample)
        agreement = reviews.sample_agreement(sample)
        self.stdout.write(
            f"review sample {sample.pk} (week of {sample.week_start}): {saved} demo grades saved "
            f"now; {progress['graded']} of {progress['total']} graded, {agreement['pairs']} "
            f"double-graded pairs, kappa {agreement['hallucination']['kappa']}; the rest is "
            "left for 'reviewer'"
        )
