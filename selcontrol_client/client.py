"""The thread-based client, for plain (non-asyncio) code.

Two daemon threads do all the network work: one keeps the config in sync (long-poll, or ETag
polling), one sends events in batches. The bot's threads only read a snapshot reference and
append to a deque.

    client = SelControl("https://selcontrol.example", token)
    variant = client.variant("prompts_v2", channel_id)
    client.record_response(channel_id=..., message_id=..., variant=variant, ...)
    ...
    client.close()  # at shutdown: sends what it can, spools the rest
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import httpx

from . import events as ev
from .base import CONFIG_PATH, EVENTS_PATH, REPORT_PATH, ClientBase

logger = logging.getLogger("selcontrol_client")


class SelControl(ClientBase):
    """A selcontrol client for threaded code. See :class:`ClientBase` for the arguments; with
    ``start=False`` the threads start on :meth:`start` (or the first ``with`` block)."""

    def __init__(self, *args: Any, start: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.events.wake = self._wake.set
        self._threads: list[threading.Thread] = []
        self._started = False
        self._synced = threading.Event()
        self._http_config: httpx.Client | None = None
        self._http_events: httpx.Client | None = None
        self._http_report: httpx.Client | None = None
        self._report_wake = threading.Event()
        if start:
            self.start()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> SelControl:
        if self._started:
            return self
        self._started = True
        if not self.base_url:
            logger.warning(
                "selcontrol: no server URL (SELCONTROL_URL); deciding from files "
                "and keeping events on disk"
            )
            return self
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        self._http_config = httpx.Client(
            base_url=self.base_url,
            headers=self._headers(),
            limits=limits,
            timeout=httpx.Timeout(self.timeout),
        )
        self._http_events = httpx.Client(
            base_url=self.base_url,
            headers=self._headers(),
            limits=limits,
            timeout=httpx.Timeout(self.timeout),
        )
        loops = [
            (self._config_loop, "config"),
            (self._sender_loop, "events"),
            (self._spool_watch, "spool"),
        ]
        if self.reporter is not None:
            self._http_report = httpx.Client(
                base_url=self.base_url,
                headers=self._headers(),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                timeout=httpx.Timeout(self.timeout),
            )
            self.config.listeners.append(self._report_wake.set)
            loops.append((self._report_loop, "report"))
        for target, name in loops:
            thread = threading.Thread(target=target, name=f"selcontrol-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __enter__(self) -> SelControl:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_until_synced(self, timeout: float = 5.0) -> bool:
        """Block until the first answer from the server (True) or the timeout (False)."""
        return self._synced.wait(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything buffered and spooled now; True when all of it was delivered."""
        if not self._threads:
            return self.events.idle()
        deadline = time.monotonic() + timeout
        self.events.flush_requested += 1
        try:
            self.events.next_attempt = min(self.events.next_attempt, time.monotonic())
            self._wake.set()
            while not self.events.idle():
                if time.monotonic() >= deadline or not self._threads[1].is_alive():
                    return False
                time.sleep(0.01)
            return True
        finally:
            self.events.flush_requested -= 1

    def close(self, timeout: float = 10.0) -> dict[str, Any]:
        """Send what the server takes within ``timeout`` seconds (at once to disk when it is
        failing), stop the threads, and spool what is left; returns the final :meth:`stats`.
        Events recorded afterwards go straight to the spool and are sent at the next start.
        Safe to call twice."""
        try:
            if self._threads and not self._stop.is_set():
                if self.events.failures and self.events.spool is not None:
                    self.events.spool_buffer()  # no waiting on a dead server
                self.flush(timeout if not self.events.failures else min(timeout, 1.0))
            self._stop.set()
            self._wake.set()
            self._report_wake.set()
            for thread in self._threads:
                thread.join(timeout=self.timeout + 1 if thread.name.endswith("events") else 0.2)
            self._spool_leftovers()
            for http in (self._http_config, self._http_events, self._http_report):
                if http is not None:
                    http.close()
        except Exception:  # noqa: BLE001
            logger.exception("selcontrol: error while closing")
        finally:
            self.events.closed = True
        return self.stats()

    def _spool_leftovers(self) -> None:
        left = self.events.buffered()
        if not left:
            return
        if self.events.spool is not None:
            self.events.spool_buffer()
        left = self.events.buffered()
        if left:
            self.events.stats.add("dropped", left)
            self.events._buf.clear()
            logger.error("selcontrol: %s events could not be sent or spooled at close", left)

    # -- config sync ------------------------------------------------------------------------------

    def _config_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            etag = self.config.snapshot.etag
            wait = self.long_poll_wait if (self.push and etag) else 0
            headers = {"If-None-Match": etag} if etag else {}
            params = {"wait": f"{wait:g}"} if wait else {}
            started = time.monotonic()
            status = 0
            try:
                assert self._http_config is not None
                response = self._http_config.get(
                    CONFIG_PATH,
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout, read=self.timeout + wait),
                )
                status = response.status_code
                error = self._handle_config_answer(
                    status, response.content, response.headers.get("ETag")
                )
            except Exception as exc:  # noqa: BLE001 - httpx errors and anything odd
                error = f"{type(exc).__name__}: {exc}"
            if self._stop.is_set():
                return
            if error is None:
                failures = 0
                self._config_ok()
                self._synced.set()
                pause = self._pause_after_sync(wait, status, time.monotonic() - started)
                if pause:
                    self._stop.wait(pause)
            else:
                failures += 1
                self._stop.wait(self._config_failed(error, failures))

    # -- instance reports (docs/fleet.md) ---------------------------------------------------------

    def _report_loop(self) -> None:
        # The first report goes out when the first config from the server is applied (the store's
        # listener wakes us), or after one interval when none comes (it then shows the error).
        reporter, http = self.reporter, self._http_report
        assert reporter is not None and http is not None  # start() runs this loop only with both
        pause = reporter.interval
        while not self._stop.is_set():
            if pause:
                self._report_wake.wait(pause)
            self._report_wake.clear()
            if self._stop.is_set():
                return
            try:
                payload = reporter.payload()
                try:
                    response = http.post(REPORT_PATH, json=payload)
                    status, error = response.status_code, None
                except Exception as exc:  # noqa: BLE001
                    status, error = None, f"{type(exc).__name__}: {exc}"
                pause = self._report_done(status, error, payload["revision"])
            except Exception:  # noqa: BLE001 - the reporter must survive anything
                logger.exception("selcontrol: instance report error")
                pause = 5.0

    # -- event sender -----------------------------------------------------------------------------

    def _sender_loop(self) -> None:
        core = self.events
        while True:
            try:
                now = time.monotonic()
                if core.should_spool(now):
                    core.spool_buffer()
                if self._stop.is_set():
                    return
                if core.ready(now):
                    item = core.next_spool_file()
                    if item is not None:
                        path, batch = item
                        if batch:
                            core.in_flight = len(batch)
                            core.finish(batch, self._post(batch), time.monotonic(), from_spool=path)
                        else:
                            core.drop_empty_spool_file(path)
                        continue
                    if core.buffered():
                        batch = core.take_batch()
                        core.finish(batch, self._post(batch), time.monotonic(), from_spool=None)
                        continue
                self._wake.wait(core.wait_time(time.monotonic(), self.flush_interval))
                self._wake.clear()
            except Exception:  # noqa: BLE001 - the sender must survive anything
                logger.exception("selcontrol: event sender error")
                self._stop.wait(1.0)

    def _spool_watch(self) -> None:
        """Move events to disk when the spool deadline passes, also while the sender is busy
        with a request that hangs."""
        core = self.events
        step = max(0.05, min(0.5, core.spool_after / 4))
        while not self._stop.wait(step):
            try:
                if core.should_spool(time.monotonic()):
                    core.spool_buffer()
            except Exception:  # noqa: BLE001
                logger.exception("selcontrol: spool error")

    def _post(self, batch: list[dict[str, Any]]) -> ev.Outcome:
        try:
            assert self._http_events is not None
            body = json.dumps({"events": batch}, separators=(",", ":")).encode()
            response = self._http_events.post(
                EVENTS_PATH, content=body, headers={"Content-Type": "application/json"}
            )
        except Exception as exc:  # noqa: BLE001
            return ev.Outcome("retry", message=f"{type(exc).__name__}: {exc}")
        return ev.classify(response.status_code, response.content, response.headers, len(batch))
