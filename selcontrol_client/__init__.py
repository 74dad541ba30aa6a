"""selcontrol_client: what the Sel bot imports to ask selcontrol which prompt version to use.

It needs httpx alone (no Django). The assignment rule lives in ``selcontrol_client.assignment``,
shared with the server.
"""

from .assignment import bucket, decide

__all__ = ["bucket", "decide"]
