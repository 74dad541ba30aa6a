"""The parts of multi-part replies: which Discord message ids belong to one reply.

The Sel bot splits a long reply into several Discord messages (``SEL_MULTI_MESSAGE_MODE``). A
reaction or a follow-up may land on any part, but selcontrol counts a reply under one message
id. ``record_response(..., extra_message_ids=[...])`` notes the other parts here, and
``record_reaction`` / ``record_followup`` translate a part's id to the reply's before sending,
so three 👍 on parts 1, 2 and 3 are three reactions on one reply.

The map is kept in memory (bounded, oldest forgotten first) and appended to a small JSON-lines
file next to the config cache, so a reaction that comes after a restart still finds its reply.
The contract and the server are unchanged: events carry the reply's id as before.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

logger = logging.getLogger("selcontrol_client")

MAX_ALIASES = 200_000
"""Parts remembered (about 60 bytes each in memory); a reply's parts are forgotten oldest first."""


class MessageAliases:
    """part message id -> the reply's message id. Thread-safe; never raises into the bot."""

    def __init__(self, path: str | os.PathLike | None, *, limit: int = MAX_ALIASES) -> None:
        self.path = Path(path) if path else None
        self.limit = max(1, limit)
        self._map: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._lines = 0
        if self.path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            with self.path.open("rb") as f:
                for line in f:
                    try:
                        part, reply = json.loads(line)
                    except (ValueError, TypeError):
                        continue  # a torn last line
                    self._remember(str(part), str(reply))
                    self._lines += 1
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("selcontrol: cannot read message parts from %s (%s)", self.path, exc)
            return
        if self._lines > 2 * self.limit:
            self._compact()

    def _remember(self, part: str, reply: str) -> None:
        self._map[part] = reply
        self._map.move_to_end(part)
        while len(self._map) > self.limit:
            self._map.popitem(last=False)

    def add(self, reply: str, parts) -> None:
        """Note that ``parts`` (message ids) belong to the reply ``reply``."""
        reply = str(reply)
        new = [(str(p), reply) for p in parts if str(p) != reply]
        if not new:
            return
        with self._lock:
            for part, target in new:
                self._remember(part, target)
            if self.path is None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write("".join(json.dumps(pair) + "\n" for pair in new))
                self._lines += len(new)
                if self._lines > 2 * self.limit:
                    self._compact()
            except OSError as exc:
                logger.warning("selcontrol: cannot save message parts to %s (%s)", self.path, exc)

    def resolve(self, message_id) -> str:
        """The reply's message id for a part's id (any other id is returned as it is)."""
        key = str(message_id)
        return self._map.get(key, key)

    def __len__(self) -> int:
        return len(self._map)

    def _compact(self) -> None:
        """Rewrite the file with what is remembered (called with the lock held)."""
        assert self.path is not None
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as f:
                f.write("".join(json.dumps(pair) + "\n" for pair in self._map.items()))
            os.replace(tmp, self.path)
            self._lines = len(self._map)
        except OSError as exc:
            logger.warning("selcontrol: cannot compact %s (%s)", self.path, exc)
