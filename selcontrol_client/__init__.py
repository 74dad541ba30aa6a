"""selcontrol_client: what the Sel bot imports to ask selcontrol which prompt version to use.

It needs httpx alone (no Django). Decisions are made locally from the synced config with the
shared assignment rule (``selcontrol_client.assignment``, which the server imports too); events
are buffered and sent in the background. See docs/client.md.

    from selcontrol_client import SelControl          # threads
    from selcontrol_client import AsyncSelControl     # asyncio (discord.py)
"""

from .aio import AsyncSelControl
from .assignment import bucket, decide
from .client import SelControl
from .configstore import ConfigStore, legacy_env_document, legacy_settings_document
from .events import followup_event, new_event_id, reaction_event, response_event

__all__ = [
    "AsyncSelControl",
    "ConfigStore",
    "SelControl",
    "bucket",
    "decide",
    "followup_event",
    "legacy_env_document",
    "legacy_settings_document",
    "new_event_id",
    "reaction_event",
    "response_event",
]
