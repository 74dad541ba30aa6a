"""The operator console: pages that compose the two domains (rollout's state and services beside
the traffic metrics recorded), kept above both so that neither domain reaches into the other
(Healthchecks' ``front/`` beside its models). Not a Django app: its templates are in
templates/console/, its template tags (``{% load console %}``, selcontrol/console/templatetags/)
are registered by name in settings.TEMPLATES, its URL names stay in the ``rollout`` namespace
(selcontrol/urls.py includes ``selcontrol.console.urls``). rollout/ holds no template: its
domain has no page of its own, and nothing in it loads metrics' tags
(tests/ops/test_import_graph.py).
"""
