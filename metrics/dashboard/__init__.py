"""The comparison dashboard: a rollout's figures over a window, by variant and period
(``series``: read from the rollups, derived, cached by the window's fingerprint), drawn as
Plotly figures (``charts``), and the pages and JSON that serve them (``views``, ``forms``,
``urls``; docs/dashboard.md). The guardrails and the review read a few of its stable names
(``series.day_coverage``, ``series.REVIEW_METRICS``)."""
