"""The bot side of ``make sel-check``: runs the Sel bot's REAL code (its ``sel_bot.main.init_app``,
``Settings``, ``SelDiscordClient`` with its message, batching, reaction and ping handlers, its
``OpenRouterClient``, ``StateManager`` on SQLite) in the bot's own virtualenv, with only the two
boundaries faked:

- Discord: ``SelDiscordClient.start`` (the gateway connection) is replaced by a loop that runs
  ``setup_hook`` and waits until the client is closed; messages, channels, users and reaction
  payloads are small fakes with the attributes the bot reads (the raw reaction payload is
  discord.py's own ``RawReactionActionEvent``);
- the LLM: OpenRouter's URL points at a local HTTP server that answers chat completions with a
  ``usage`` object, as OpenRouter does.

Run by scripts/sel_check.py (never by hand: it expects the patched copy as its working
directory, a .env there, and talks to the orchestrator through stdin/stdout lines). Writes what
the bot did to the ledger file given: every reply (message ids of its parts, the prompt variant
the bot logged, the tokens the fake LLM charged), every reaction and follow-up the bot's
handlers saw, the bot's own feedback sentiment, and when each event reached the disk spool
during the outage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, os.getcwd())  # the patched copy's project_echo/

import discord  # noqa: E402
from sel_bot import discord_client as bot_module  # noqa: E402
from sel_bot import llm_client as llm_module  # noqa: E402
from sel_bot import main as bot_main  # noqa: E402

BOT_ID = 990000000000000001
_ids = itertools.count(int(time.time() * 1000) << 22)  # snowflake-like, increasing


def snowflake() -> int:
    return next(_ids)


def say(line: str) -> str:
    """A line to the orchestrator, and its answer."""
    print(line, flush=True)
    return sys.stdin.readline().strip()


# -- the LLM boundary: a local OpenRouter ------------------------------------------------------


class FakeOpenRouter:
    """Answers /chat/completions like OpenRouter (choices + usage) and /embeddings. Counts the
    tokens it charged per model; ``hold`` makes the next main-model call wait (a reply in
    progress when SIGTERM arrives)."""

    def __init__(self, main_model: str):
        self.main_model = main_model
        self.charged: dict[str, list[int]] = {}
        self.main_calls = 0
        self.hold = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if self.path.endswith("/embeddings"):
                    answer = {"data": [{"embedding": [0.01] * 16}], "usage": {"prompt_tokens": 3}}
                else:
                    answer = outer.complete(body)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def complete(self, body: dict) -> dict:
        model = body.get("model", "")
        messages = body.get("messages") or []
        last = str(messages[-1].get("content", "")) if messages else ""
        if model == self.main_model:
            self.main_calls += 1
            if self.hold.is_set():
                self.hold.clear()
                self.held.set()
                self.release.wait(15)
            if "long" in last.lower():
                text = (
                    "Okay, here is the longer version you asked for.\n"
                    "First, the short answer is yes, and it has been that way for a while.\n"
                    "Second, the details matter: check the settings page before you change it."
                )
            else:
                text = "Sure, that works for me."
        else:  # the utility model: classification and planning want JSON
            text = json.dumps(
                {
                    "sentiment": "neutral",
                    "intensity": 0.3,
                    "playful": False,
                    "memory_write": False,
                    "tone": "neutral",
                }
            )
        prompt = max(1, len(json.dumps(messages)) // 4)
        completion = max(1, len(text) // 4)
        totals = self.charged.setdefault(model, [0, 0])
        totals[0] += prompt
        totals[1] += completion
        return {
            "id": f"gen-{snowflake()}",
            "model": model,
            "choices": [{"message": {"role": "assistant", "content": text}}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }


# -- the Discord boundary: the objects the bot reads -------------------------------------------


class FakeUser:
    def __init__(self, user_id: int, name: str, *, bot: bool = False):
        self.id = user_id
        self.name = name
        self.display_name = name
        self.global_name = name
        self.bot = bot
        self.mention = f"<@{user_id}>"
        self.roles = []
        self.avatar = None
        self.display_avatar = None
        self.guild_permissions = None

    def __eq__(self, other):
        return getattr(other, "id", None) == self.id

    def __hash__(self):
        return hash(self.id)

    def __str__(self):
        return self.name


class Typing:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


class FakeReference:
    def __init__(self, message: FakeMessage):
        self.message_id = message.id
        self.channel_id = message.channel.id
        self.resolved = message
        self.cached_message = message


class FakeMessage:
    def __init__(
        self, channel: FakeChannel, author: FakeUser, content: str, *, reply_to=None, mentions=()
    ):
        self.id = snowflake()
        self.channel = channel
        self.author = author
        self.content = content
        self.clean_content = content
        self.mentions = list(mentions)
        self.role_mentions = []
        self.attachments = []
        self.embeds = []
        self.stickers = []
        self.guild = None
        self.reference = FakeReference(reply_to) if reply_to is not None else None
        self.created_at = dt.datetime.now(dt.UTC)
        self.type = discord.MessageType.default
        self.jump_url = f"https://discord.com/channels/@me/{channel.id}/{self.id}"
        self.reactions = []
        channel.history_list.append(self)

    async def reply(self, content: str, mention_author: bool = False):
        return await self.channel.send(content, _reply=True)

    async def add_reaction(self, emoji):
        self.channel.bot_reactions.append((self.id, str(emoji)))

    async def delete(self):
        pass


class FakeChannel:
    def __init__(self, channel_id: int, bot_user: FakeUser):
        self.id = channel_id
        self.name = f"chan-{channel_id}"
        self.guild = None
        self.bot_user = bot_user
        self.sent: list[FakeMessage] = []
        self.history_list: list[FakeMessage] = []
        self.bot_reactions: list = []
        self.type = discord.ChannelType.text

    async def send(self, content=None, **kwargs):
        message = FakeMessage(self, self.bot_user, content or "")
        self.sent.append(message)
        return message

    def typing(self):
        return Typing()

    async def history(self, limit=None, oldest_first=False, **kwargs):
        items = list(self.history_list)
        if not oldest_first:
            items.reverse()
        for message in items[:limit]:
            yield message

    async def fetch_message(self, message_id):
        for message in self.history_list:
            if message.id == message_id:
                return message
        raise discord.NotFound(type("R", (), {"status": 404, "reason": "nf"})(), "not found")


def raw_reaction(message: FakeMessage, user: FakeUser, emoji: str, action: str):
    """discord.py's own payload, as the gateway would build it."""
    data = {
        "message_id": str(message.id),
        "channel_id": str(message.channel.id),
        "user_id": str(user.id),
        "burst": False,
        "type": 0,
    }
    if action == "add":
        data["message_author_id"] = str(message.author.id)
    partial = discord.PartialEmoji.from_str(emoji)
    return discord.RawReactionActionEvent(
        data, partial, "REACTION_ADD" if action == "add" else "REACTION_REMOVE"
    )


class FakeReaction:
    def __init__(self, message: FakeMessage, emoji: str):
        self.message = message
        self.emoji = discord.PartialEmoji.from_str(emoji) if emoji.startswith("<") else emoji


# -- the scenario ------------------------------------------------------------------------------


class Ledger:
    """What the bot did, as seen at its boundaries and in its own log lines."""

    def __init__(self):
        self.replies: list[dict] = []  # {primary, parts, variant, kind, channel}
        self.reactions: list[dict] = []  # {message, primary, user, emoji, action, bot_sentiment}
        self.followups: list[dict] = []  # {message, reply_to, primary, text}
        self.variants_logged: list[tuple[str, str]] = []  # (channel, variant)
        self.spool_delays: list[float] = []
        self.outage_events = 0
        self.errors: list[str] = []

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class VariantLog(logging.Handler):
    """The bot's own log line: "Prompt variant %s selected for channel=%s ..."."""

    def __init__(self, ledger: Ledger):
        super().__init__()
        self.ledger = ledger

    def emit(self, record):
        if record.msg.startswith("Prompt variant %s selected"):
            self.ledger.variants_logged.append((str(record.args[1]), str(record.args[0])))


class Scenario:
    def __init__(self, client, ledger: Ledger, llm: FakeOpenRouter, life: int, channels: list[int]):
        self.client = client
        self.ledger = ledger
        self.llm = llm
        self.life = life
        self.bot_user = FakeUser(BOT_ID, "Sel", bot=True)
        self.channels = {cid: FakeChannel(cid, self.bot_user) for cid in channels}
        self.users = [FakeUser(700000000000000000 + n, f"user{n}") for n in range(12)]
        self.bot_sentiments: list[str] = []

    # helpers --------------------------------------------------------------------------------

    async def message(
        self,
        channel: FakeChannel,
        user: FakeUser,
        text: str,
        *,
        reply_to=None,
        mention: bool = True,
    ) -> FakeMessage:
        mentions = [self.bot_user] if mention else []
        msg = FakeMessage(channel, user, text, reply_to=reply_to, mentions=mentions)
        if reply_to is not None and reply_to.author.id == BOT_ID:
            self.ledger.followups.append(
                {
                    "message": str(msg.id),
                    "reply_to": str(reply_to.id),
                    "primary": self.primary_of(reply_to.id),
                    "text": text,
                }
            )
        await self.client.on_message(msg)
        return msg

    def primary_of(self, message_id: int) -> str:
        for reply in self.ledger.replies:
            if str(message_id) in reply["parts"]:
                return reply["primary"]
        return str(message_id)

    async def wait_reply(
        self, channel: FakeChannel, before: int, kind: str = "reply", timeout: float = 20
    ) -> dict:
        """The bot's answer in channel: its messages after ``before`` (parts included)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            new = channel.sent[before:]
            if new and not any(t for t in self.client._reply_tasks if not t.done()):
                await asyncio.sleep(0.3)  # a multi-part reply's last part
                new = channel.sent[before:]
                variant = [v for c, v in self.ledger.variants_logged if c == str(channel.id)]
                reply = {
                    "primary": str(new[0].id),
                    "parts": [str(m.id) for m in new],
                    "variant": variant[-1] if variant else None,
                    "kind": kind,
                    "channel": str(channel.id),
                    "messages": new,
                }
                self.ledger.replies.append(reply)
                return reply
        raise AssertionError(f"the bot did not answer in channel {channel.id}")

    async def ask(self, channel: FakeChannel, user: FakeUser, text: str, **kw) -> dict:
        before = len(channel.sent)
        await self.message(channel, user, text, **kw)
        return await self.wait_reply(channel, before)

    async def react(self, message: FakeMessage, user: FakeUser, emoji: str, action: str = "add"):
        before = len(self.bot_sentiments)
        if action == "add":
            await self.client.on_raw_reaction_add(raw_reaction(message, user, emoji, "add"))
            await self.client.on_reaction_add(FakeReaction(message, emoji), user)  # cached
        else:
            await self.client.on_raw_reaction_remove(raw_reaction(message, user, emoji, "remove"))
        self.ledger.reactions.append(
            {
                "message": str(message.id),
                "primary": self.primary_of(message.id),
                "user": str(user.id),
                "emoji": emoji,
                "action": action,
                "bot_sentiment": self.bot_sentiments[-1]
                if len(self.bot_sentiments) > before
                else None,
            }
        )

    # the flows --------------------------------------------------------------------------------

    async def run(self) -> None:
        sc = self.client.selcontrol
        assert await sc.wait_until_synced(15), "selcontrol never synced"
        chans = list(self.channels.values())
        u = self.users
        if self.life == 1:
            # plain replies, one per channel (the variants differ between channels)
            replies = [
                await self.ask(ch, u[i], f"hey sel, how are you today? ({i})")
                for i, ch in enumerate(chans)
            ]
            # multi-part replies, a reaction on every part
            multi = await self.ask(chans[0], u[1], "sel, give me the long explanation please")
            assert len(multi["parts"]) > 1, f"expected a multi-part reply, got {multi['parts']}"
            for n, part in enumerate(multi["messages"]):
                await self.react(part, u[n], "👍")
            # reactions the bot counts negative, a custom emoji, a removal, a re-add
            await self.react(replies[1]["messages"][0], u[2], "🤔")
            await self.react(replies[1]["messages"][0], u[3], "😂")
            await self.react(replies[2]["messages"][0], u[4], "<:selwave:123456789012345678>")
            await self.react(replies[2]["messages"][0], u[5], "❤️")
            await self.react(replies[2]["messages"][0], u[5], "❤️", "remove")
            await self.react(replies[3]["messages"][0], u[6], "🔥")
            await self.react(replies[3]["messages"][0], u[6], "🔥", "remove")
            await self.react(replies[3]["messages"][0], u[6], "🔥")
            # a correction on the second part of the multi-part reply
            await self.ask(chans[0], u[2], "actually, that's wrong", reply_to=multi["messages"][1])
            # a batch: three messages within the window, two of them replies to Sel
            before = len(chans[1].sent)
            await self.message(
                chans[1], u[7], "no, that's not right", reply_to=replies[1]["messages"][0]
            )
            await self.message(chans[1], u[7], "thanks anyway!", reply_to=replies[4]["messages"][0])
            await self.message(chans[1], u[7], "also, what is 2+2?")
            await self.wait_reply(chans[1], before)
            # an inactivity ping, and a reaction on it
            ping = await self.ping(chans[4], u[8])
            await self.react(ping["messages"][0], u[8], "😀")
            await sc.flush(10)
            await self.outage(chans, u)
            await self.sigterm(chans[5], u[9], "server down")
        else:
            # after the restart: the spool from the first life is replayed; more traffic
            reply = await self.ask(chans[2], u[10], "hi sel, back again")
            await self.react(reply["messages"][0], u[10], "👍")
            multi = await self.ask(chans[3], u[11], "sel, the long version again please")
            await self.react(multi["messages"][-1], u[11], "🔥")
            await self.sigterm(chans[0], u[0], "server up")

    async def ping(self, channel: FakeChannel, user: FakeUser) -> dict:
        from sel_bot.models import UserState

        state = self.client.state_manager
        async with state.session() as session:
            row = await session.get(UserState, str(user.id))
            if row is None:
                row = UserState(user_id=str(user.id), handle=user.name)
            row.last_seen_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=5)
            row.last_channel_id = str(channel.id)
            row.last_ping_ts = None
            await session.merge(row)
            await session.commit()
        before = len(channel.sent)
        await self.client._send_inactivity_pings()  # the bot's real ping pass
        return await self.wait_reply(channel, before, kind="ping")

    async def outage(self, chans, u) -> None:
        """The orchestrator stops selcontrol; the bot goes on; every event must reach the disk
        spool within spool_after of being recorded."""
        sc = self.client.selcontrol
        assert say("OUTAGE") == "OK"
        recorded: dict[str, float] = {}
        real_put = sc.events.put

        def put(event):  # observe only: when each event was recorded
            recorded[str(event.get("id"))] = time.monotonic()
            real_put(event)

        sc.events.put = put
        on_disk: dict[str, float] = {}
        stop = asyncio.Event()

        async def watch():
            spool = sc.events.spool
            while not stop.is_set():
                for path in spool.directory.glob("*.jsonl"):
                    with contextlib.suppress(OSError, ValueError):
                        for line in path.read_text().splitlines():
                            on_disk.setdefault(json.loads(line)["id"], time.monotonic())
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        r1 = await self.ask(chans[1], u[3], "sel, are you still there?")
        await self.react(r1["messages"][0], u[3], "👍")
        r2 = await self.ask(chans[2], u[4], "sel, tell me the long story")
        await self.react(r2["messages"][-1], u[4], "👎")
        await self.ask(chans[2], u[5], "no, that's not it", reply_to=r2["messages"][0])
        deadline = time.monotonic() + sc.events.spool_after + 3
        while set(recorded) - set(on_disk) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await watcher
        sc.events.put = real_put
        self.ledger.outage_events = len(recorded)
        for event_id, at in recorded.items():
            self.ledger.spool_delays.append(on_disk[event_id] - at if event_id in on_disk else -1)

    async def sigterm(self, channel: FakeChannel, user: FakeUser, note: str) -> None:
        """SIGTERM while a reply is in progress (its LLM call held): the bot must finish it and
        selcontrol must send or spool its event before the process ends."""
        self.llm.hold.set()
        before = len(channel.sent)
        await self.message(channel, user, f"sel, one last question ({note})")
        while not self.llm.held.is_set():
            await asyncio.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)  # main.py's handler calls client.close()
        await asyncio.sleep(0.2)
        self.llm.release.set()
        await self.wait_reply(channel, before, kind="reply")


def install_fakes(ledger: Ledger, llm: FakeOpenRouter, life: int, channels: list[int]) -> None:
    llm_module.OPENROUTER_URL = f"{llm.url}/api/v1/chat/completions"
    llm_module.OPENROUTER_EMBEDDINGS_URL = f"{llm.url}/api/v1/embeddings"
    logging.getLogger(bot_module.__name__).addHandler(VariantLog(ledger))

    async def fake_start(self, token, *, reconnect=True):
        """The gateway connection: ready, then serve until close()."""
        self._connection.user = None
        scenario = Scenario(self, ledger, llm, life, channels)
        type(self).user = property(lambda _self: scenario.bot_user)
        self.get_channel = lambda cid: scenario.channels.get(int(cid))
        real_feedback = self.state_manager.log_feedback

        async def log_feedback(*args, **kwargs):  # observe the bot's own sentiment
            scenario.bot_sentiments.append(kwargs.get("sentiment"))
            return await real_feedback(*args, **kwargs)

        self.state_manager.log_feedback = log_feedback
        await self.setup_hook()
        task = asyncio.create_task(scenario.run())
        while not self.is_closed():
            await asyncio.sleep(0.05)
            if task.done() and task.exception() is not None:
                ledger.errors.append(repr(task.exception()))
                await self.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)  # the reply finishing during shutdown
        if task.done() and not task.cancelled() and task.exception() is not None:
            ledger.errors.append(repr(task.exception()))
        ledger.selcontrol_stats = self.selcontrol.stats()["events"]

    bot_module.SelDiscordClient.start = fake_start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--life", type=int, required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--channels", required=True, help="comma-separated channel ids")
    args = parser.parse_args()
    channels = [int(c) for c in args.channels.split(",")]
    ledger = Ledger()
    from sel_bot.config import Settings

    settings = Settings()  # the bot's real settings, from the .env in this directory
    llm = FakeOpenRouter(settings.openrouter_main_model)
    install_fakes(ledger, llm, args.life, channels)
    started = time.monotonic()
    asyncio.run(bot_main.init_app())  # the bot's real start-up and shutdown
    ledger.seconds = round(time.monotonic() - started, 1)
    ledger.llm_charged = llm.charged
    ledger.main_model = settings.openrouter_main_model
    ledger.settings = {
        "selcontrol_url": settings.selcontrol_url,
        "enable_prompts_v2": settings.enable_prompts_v2,
        "prompts_v2_rollout_percentage": settings.prompts_v2_rollout_percentage,
    }
    for reply in ledger.replies:
        reply.pop("messages", None)
    Path(args.ledger).write_text(json.dumps(ledger.as_dict(), indent=1))
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
