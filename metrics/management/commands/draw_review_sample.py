"""Draw a review sample without a broker, or check that a recorded one reproduces.

manage.py draw_review_sample                      # last week's, like the Monday beat entry
manage.py draw_review_sample --week 2026-03-02 --size 50 --double 20 --seed 1234
manage.py draw_review_sample --verify 7           # same seed + cut-off -> same replies?

A week that has a sample already: the default (weekly) draw prints it and changes nothing; a
draw with options refuses, naming it, unless --additional (with --reason) asks for more replies.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from metrics.reviews import services as reviews
from metrics.reviews.models import ReviewSample
from rollout.services import Actor


class Command(BaseCommand):
    help = (
        "Draw a review sample (default: last week's scheduled one, if none yet), or --verify one."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--rollout", default=None, help="Rollout key (default: the default rollout)"
        )
        parser.add_argument("--week", help="Any day of the week to sample (default: last week)")
        parser.add_argument("--size", type=int, default=None, help="Replies to draw (default 50)")
        parser.add_argument(
            "--double", type=float, default=None, help="Percent double graded (default 20)"
        )
        parser.add_argument(
            "--seed", type=int, default=None, help="Seed (default: random, recorded)"
        )
        parser.add_argument("--reason", default="", help="Kept in the audit log")
        parser.add_argument(
            "--additional",
            action="store_true",
            help="Draw another sample of a week that has one (needs --reason)",
        )
        parser.add_argument(
            "--verify", type=int, metavar="SAMPLE", help="Check a sample reproduces"
        )

    def handle(self, *args, **options) -> None:
        from django.conf import settings

        if options["verify"]:
            sample = ReviewSample.objects.filter(pk=options["verify"]).first()
            if sample is None:
                raise CommandError(f"There is no review sample {options['verify']}.")
            same = reviews.reproduce(sample) == reviews.sample_response_ids(sample)
            self.stdout.write(
                f"sample {sample.pk} seed {sample.seed}: reproduced: {'yes' if same else 'no'}"
            )
            if not same:
                raise CommandError(
                    "The sample does not reproduce: raw events changed since it was drawn."
                )
            return
        try:
            week = reviews.parse_week(options["week"], name="--week") if options["week"] else None
        except reviews.ReviewError as exc:
            raise CommandError(str(exc)) from None
        scheduled = (
            week is None
            and options["size"] is None
            and options["seed"] is None
            and not options["additional"]
        )
        try:
            sample = reviews.draw_sample(
                rollout_key=options["rollout"] or settings.SELCONTROL_DEFAULT_ROLLOUT,
                week_start=week or reviews.previous_week(),
                size=options["size"],
                double_share=None if options["double"] is None else options["double"] / 100,
                seed=options["seed"],
                kind=ReviewSample.Kind.SCHEDULED if scheduled else ReviewSample.Kind.ON_DEMAND,
                origin=ReviewSample.Origin.COMMAND,
                additional=options["additional"],
                actor=Actor("manage.py", via="system"),
                reason=options["reason"],
            )
        except reviews.ReviewError as exc:
            raise CommandError(str(exc)) from None
        allocation = ", ".join(
            f"{v} {a['drawn']}/{a['available']}" for v, a in sorted(sample.allocation.items())
        )
        self.stdout.write(
            f"sample {sample.pk} week of {sample.week_start} seed {sample.seed}: {sample.drawn} of "
            f"{sample.requested} drawn ({allocation or 'no replies with text'}), "
            f"shortfall {sample.shortfall}"
        )
