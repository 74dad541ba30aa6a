"""The asyncio client, for discord.py bots.

Decisions and ``record_*`` are plain (non-async) calls that never wait; two background tasks on
the bot's event loop do the network work with ``httpx.AsyncClient``. Disk writes of the spool run
in a worker thread (``asyncio.to_thread``) so the loop never blocks on fsync.

    client = AsyncSelControl("https://selcontrol.example", token)
    await client.start()          # e.g. in setup_hook()
    variant = client.variant("prompts_v2", channel_id)
    client.record_response(...)
    await client.close()          # at shutdown
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import httpx

from . import events as ev
from .base import CONFIG_PATH, EVENTS_PATH, REPORT_PATH, ClientBase

logger = logging.getLogger("selcontrol_client")


class AsyncSelControl(ClientBase):
    """A selcontrol client for asyncio code; same arguments as :class:`ClientBase`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._synced: asyncio.Event | None = None
        self._stopping = False
        self._http: httpx.AsyncClient | None = None
        self._report_wake: asyncio.Event | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> AsyncSelControl:
        if self._loop is not None:
            return self
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._synced = asyncio.Event()
        self.events.wake = self._wake_threadsafe
        if not self.base_url:
            logger.warning(
                "selcontrol: no server URL (SELCONTROL_URL); deciding from files "
                "and keeping events on disk"
            )
            return self
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers(),
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
        )
        self._tasks = [
            asyncio.create_task(self._config_loop(), name="selcontrol-config"),
            asyncio.create_task(self._sender_loop(), name="selcontrol-events"),
            asyncio.create_task(self._spool_watch(), name="selcontrol-spool"),
        ]
        if self.reporter is not None:
            self._report_wake = asyncio.Event()
            self.config.listeners.append(self._wake_reporter)
            self._tasks.append(asyncio.create_task(self._report_loop(), name="selcontrol-report"))
        return self

    async def __aenter__(self) -> AsyncSelControl:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _wake_threadsafe(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            if asyncio.get_running_loop() is loop:
                wake.set()
                return
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(wake.set)

    async def wait_until_synced(self, timeout: float = 5.0) -> bool:
        if self._synced is None:
            return False
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def flush(self, timeout: float = 10.0) -> bool:
        """Send everything buffered and spooled now; True when all of it was delivered."""
        if not self._tasks:
            return self.events.idle()
        deadline = time.monotonic() + timeout
        self.events.flush_requested += 1
        try:
            self.events.next_attempt = min(self.events.next_attempt, time.monotonic())
            self._wake_threadsafe()
            while not self.events.idle():
                if time.monotonic() >= deadline or self._tasks[1].done():
                    return False
                await asyncio.sleep(0.01)
            return True
        finally:
            self.events.flush_requested -= 1

    async def close(self, timeout: float = 10.0) -> dict[str, Any]:
        """Send what the server takes within ``timeout`` seconds (at once to disk when it is
        failing), stop the tasks, and spool what is left; returns the final :meth:`stats`.
        Events recorded afterwards (a reply that finishes during the bot's shutdown) go
        straight to the spool and are sent at the next start. Safe to call twice."""
        try:
            if self._tasks and not self._stopping:
                if self.events.failures and self.events.spool is not None:
                    await asyncio.to_thread(self.events.spool_buffer)  # no waiting on a dead server
                await self.flush(timeout if not self.events.failures else min(timeout, 1.0))
            self._stopping = True
            if self._wake is not None:
                self._wake.set()
            for task in self._tasks:
                if not task.get_name().endswith("events"):
                    task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    # The sender ends after the request it has in flight (bounded by the HTTP
                    # timeout); cancelled past that, it puts its batch back first.
                    await asyncio.wait_for(task, self.timeout + 1)
            await self._spool_leftovers()
        except Exception:  # noqa: BLE001
            logger.exception("selcontrol: error while closing")
        finally:
            self.events.closed = True
            if self._http is not None:
                with contextlib.suppress(Exception):
                    await self._http.aclose()
                self._http = None
        return self.stats()

    async def _spool_leftovers(self) -> None:
        if not self.events.buffered():
            return
        if self.events.spool is not None:
            await asyncio.to_thread(self.events.spool_buffer)
        left = self.events.buffered()
        if left:
            self.events.stats.add("dropped", left)
            self.events._buf.clear()
            logger.error("selcontrol: %s events could not be sent or spooled", left)

    # -- config sync ------------------------------------------------------------------------------

    async def _config_loop(self) -> None:
        failures = 0
        while not self._stopping:
            etag = self.config.snapshot.etag
            wait = self.long_poll_wait if (self.push and etag) else 0
            headers = {"If-None-Match": etag} if etag else {}
            params = {"wait": f"{wait:g}"} if wait else {}
            started = time.monotonic()
            status = 0
            try:
                assert self._http is not None
                response = await self._http.get(
                    CONFIG_PATH,
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout, read=self.timeout + wait),
                )
                status = response.status_code
                error = self._handle_config_answer(
                    status, response.content, response.headers.get("ETag")
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                failures = 0
                self._config_ok()
                assert self._synced is not None
                self._synced.set()
                pause = self._pause_after_sync(wait, status, time.monotonic() - started)
                if pause:
                    await asyncio.sleep(pause)
            else:
                failures += 1
                await asyncio.sleep(self._config_failed(error, failures))

    # -- instance reports (docs/fleet.md) ---------------------------------------------------------

    def _wake_reporter(self) -> None:
        loop, wake = self._loop, self._report_wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            if asyncio.get_running_loop() is loop:
                wake.set()
                return
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(wake.set)

    async def _report_loop(self) -> None:
        assert self._report_wake is not None and self.reporter is not None
        # The first report goes out when the first config from the server is applied (the store's
        # listener wakes us), or after one interval when none comes (it then shows the error).
        pause = self.reporter.interval
        while not self._stopping:
            if pause:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._report_wake.wait(), pause)
            self._report_wake.clear()
            try:
                payload = self.reporter.payload()
                try:
                    assert self._http is not None
                    response = await self._http.post(REPORT_PATH, json=payload)
                    status, error = response.status_code, None
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    status, error = None, f"{type(exc).__name__}: {exc}"
                pause = self._report_done(status, error, payload["revision"])
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                logger.exception("selcontrol: instance report error")
                pause = 5.0

    # -- event sender -----------------------------------------------------------------------------

    async def _sender_loop(self) -> None:
        core = self.events
        assert self._wake is not None
        while True:
            try:
                now = time.monotonic()
                if core.should_spool(now):
                    await asyncio.to_thread(core.spool_buffer)
                if self._stopping:
                    return
                if core.ready(now):
                    item = await asyncio.to_thread(core.next_spool_file)
                    if item is not None:
                        path, batch = item
                        if batch:
                            core.in_flight = len(batch)
                            outcome = await self._post(batch)
                            await asyncio.to_thread(
                                core.finish, batch, outcome, time.monotonic(), from_spool=path
                            )
                        else:
                            await asyncio.to_thread(core.drop_empty_spool_file, path)
                        continue
                    if core.buffered():
                        batch = core.take_batch()
                        try:
                            outcome = await self._post(batch)
                        except asyncio.CancelledError:
                            # Cancelled mid-request (shutdown): the batch goes back to be spooled.
                            retry = ev.Outcome("retry", message="cancelled")
                            core.finish(batch, retry, time.monotonic(), from_spool=None)
                            raise
                        core.finish(batch, outcome, time.monotonic(), from_spool=None)
                        continue
                delay = core.wait_time(time.monotonic(), self.flush_interval)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                logger.exception("selcontrol: event sender error")
                await asyncio.sleep(1.0)

    async def _spool_watch(self) -> None:
        """Move events to disk when the spool deadline passes, also while the sender is busy
        with a request that hangs (its in-flight batch stays with it)."""
        core = self.events
        step = max(0.05, min(0.5, core.spool_after / 4))
        while not self._stopping:
            await asyncio.sleep(step)
            try:
                if core.should_spool(time.monotonic()):
                    await asyncio.to_thread(core.spool_buffer)
            except Exception:  # noqa: BLE001
                logger.exception("selcontrol: spool error")

    async def _post(self, batch: list[dict[str, Any]]) -> ev.Outcome:
        try:
            assert self._http is not None
            body = json.dumps({"events": batch}, separators=(",", ":")).encode()
            response = await self._http.post(
                EVENTS_PATH, content=body, headers={"Content-Type": "application/json"}
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            return ev.Outcome("retry", message=f"{type(exc).__name__}: {exc}")
        return ev.classify(response.status_code, response.content, response.headers, len(batch))
