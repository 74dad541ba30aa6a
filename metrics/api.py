"""Events and summaries: POST /api/v1/events, GET /api/v1/rollouts/<key>/summary."""

from ninja import Router

router = Router(tags=["events"])
