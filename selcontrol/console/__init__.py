"""The operator console: pages that compose the two domains (rollout's state and services beside
the traffic metrics recorded), kept above both so that neither domain reaches into the other
(Healthchecks' ``front/`` beside its models). Not a Django app: its templates stay in
templates/rollout/, its URL names in the ``rollout`` namespace (selcontrol/urls.py includes
``selcontrol.console.urls``)."""
