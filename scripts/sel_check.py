"""``make sel-check SEL=/path/to/SEL-checkout``: the migration checked against the real Sel bot.

Not a test of the suite (it needs a checkout of the bot and the bot's dependencies): a
repeatable check, like a benchmark. It

1. copies the checkout (the bot's repository 4inzler/SEL, at least ``project_echo/`` and the
   top-level Docker files) to a temporary directory and applies ``docs/sel-bot.patch`` with
   ``git apply``;
2. builds the client wheel into the copy's ``project_echo/vendor/`` (the guide's step 1) and
   installs the bot's ``requirements.txt`` into the bot's own virtualenv (``--venv``, default
   ``$SEL_VENV``; created when missing), then checks that ``Settings()`` loads with the new
   ``.env``;
3. starts selcontrol (gunicorn, a throw-away PostgreSQL database on ``DATABASE_URL``'s server),
   creates the bot's and an operator's token, and runs the guide's step-0 ``curl`` as written;
4. runs the bot's real code twice (scripts/sel_check_driver.py, in the bot's virtualenv, with
   only Discord and OpenRouter faked at the boundary): replies in channels of every variant,
   multi-part replies with a reaction on each part, reactions the bot counts negative, custom
   emoji, removals, a correction on part 2, a batch of three messages, an inactivity ping, a
   selcontrol outage (stopped server) and a SIGTERM with a reply in progress (server down);
   then, after a restart, the spool's replay, more traffic and a SIGTERM with the server up;
5. compares what selcontrol stored and counts with what the bot did, case by case, and exits
   non-zero if any case fails.

    .venv/bin/python scripts/sel_check.py --sel /path/to/SEL [--port 8800] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selcontrol_client import assignment  # noqa: E402
from selcontrol_client.configstore import DEFAULT_ROLLOUT, legacy_document  # noqa: E402

PATCH = ROOT / "docs" / "sel-bot.patch"
GUIDE = ROOT / "docs" / "client.md"
BOT_MODEL = "anthropic/claude-3-5-sonnet-20241022"
PERCENTAGE, SIMPLIFIED = 50, 50  # the bot's values in this check (its .env)
SPOOL_AFTER = 5.0  # the client's default, which the bot keeps


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


class Check:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="sel-check-"))
        self.copy = self.work / "SEL"
        self.bot_dir = self.copy / "project_echo"
        default_venv = Path(tempfile.gettempdir()) / "sel-check-venv"
        self.venv = Path(args.venv or os.environ.get("SEL_VENV") or default_venv)
        self.py = self.venv / "bin" / "python"
        url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/selcontrol")
        parsed = urlparse(url)
        self.db = f"{(parsed.path.lstrip('/') or 'selcontrol')}_selcheck"
        self.pg = parsed._replace(path="/postgres").geturl()
        self.db_url = parsed._replace(path=f"/{self.db}").geturl()
        self.port = args.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen | None = None
        self.results: list[tuple[str, str, str, bool]] = []

    # -- steps ----------------------------------------------------------------------------------

    def copy_and_patch(self) -> None:
        src = Path(self.args.sel).resolve()
        if not (src / "project_echo" / "sel_bot" / "discord_client.py").exists():
            sys.exit(f"{src} is not a checkout of the Sel bot (no project_echo/sel_bot/)")
        shutil.copytree(
            src, self.copy, ignore=shutil.ignore_patterns(".git", "__pycache__"), symlinks=True
        )
        run(["git", "apply", "--verbose", str(PATCH)], cwd=self.copy, capture_output=True)
        self.record("the patch applies with git apply", "applies", "applied", True)

    def bot_env(self) -> None:
        if not self.py.exists():
            run([sys.executable, "-m", "venv", str(self.venv)])
        vendor = self.bot_dir / "vendor"
        run(
            [
                str(self.py),
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "-w",
                str(vendor),
                str(ROOT / "selcontrol_client"),
            ],
            capture_output=True,
        )
        run(
            [str(self.py), "-m", "pip", "install", "-q", "-r", "requirements.txt"],
            cwd=self.bot_dir,
            capture_output=True,
        )
        wheel = next(vendor.glob("selcontrol_client-*.whl"))
        run(
            [
                str(self.py),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--force-reinstall",
                str(wheel),
            ],
            capture_output=True,
        )

    def database(self) -> None:
        sql = f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'
        run(["psql", self.pg, "-qc", sql], capture_output=True)
        run(["psql", self.pg, "-qc", f'CREATE DATABASE "{self.db}"'], capture_output=True)
        run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.server_env())
        self.bot_token = self.token("sel-bot", "config:read", "events:write")
        self.ops_token = self.token("chatops", "rollout:operate", "config:read")

    def token(self, name: str, *scopes: str) -> str:
        cmd = [sys.executable, "manage.py", "create_api_token", name]
        for scope in scopes:
            cmd += ["--scope", scope]
        out = run(cmd, cwd=ROOT, env=self.server_env(), capture_output=True, text=True).stdout
        return out.strip().splitlines()[-1]

    def server_env(self) -> dict:
        return {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "SECRET_KEY": "sel-check-" + "k" * 40,
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "CELERY_TASK_ALWAYS_EAGER": "true",
            "LOG_LEVEL": "WARNING",
        }

    def start_server(self) -> None:
        log = (self.work / "server.log").open("ab")
        self.server = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/gunicorn"),
                "selcontrol.wsgi",
                "-b",
                f"127.0.0.1:{self.port}",
                "-k",
                "gthread",
                "--threads",
                "16",
                "-w",
                "1",
                "--timeout",
                "60",
            ],
            cwd=ROOT,
            env=self.server_env(),
            stdout=log,
            stderr=log,
        )
        for _ in range(300):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        sys.exit("selcontrol did not start; see " + str(self.work / "server.log"))

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(20)
        self.server = None

    def step0(self) -> None:
        """The guide's step-0 command, run by bash exactly as docs/client.md prints it."""
        text = GUIDE.read_text()
        block = re.search(r"<!-- sel-check: step 0 -->\s*```bash\n(.*?)```", text, re.S)
        assert block, "docs/client.md has no step-0 block"
        env = {
            **os.environ,
            "SELCONTROL_URL": self.url,
            "OPS_TOKEN": self.ops_token,
            "ENABLE_PROMPTS_V2": "true",
            "PROMPTS_V2_ROLLOUT_PERCENTAGE": str(PERCENTAGE),
            "PROMPTS_V2_SIMPLIFIED_ROLLOUT_PERCENTAGE": str(SIMPLIFIED),
        }
        out = run(["bash", "-e", "-c", block.group(1)], env=env, capture_output=True, text=True)
        state = httpx.get(
            f"{self.url}/api/v1/rollouts/{DEFAULT_ROLLOUT}",
            timeout=5,
            headers={"Authorization": f"Bearer {self.ops_token}"},
        ).json()
        got = (state["enabled"], state["percentage"], state["simplified_percentage"])
        self.record(
            "guide step 0: the curl runs in bash as written",
            "(True, 50, 50)",
            str(got),
            got == (True, PERCENTAGE, SIMPLIFIED) and '"revision"' in out.stdout,
        )

    def write_env(self) -> None:
        """The bot's .env: its own settings plus the two the guide adds."""
        data = self.work / "data"
        values = {
            "DISCORD_BOT_TOKEN": "fake-discord-token",
            "OPENROUTER_API_KEY": "fake-openrouter-key",
            "OPENROUTER_MAIN_MODEL": BOT_MODEL,
            "SELCONTROL_URL": self.url,
            "SELCONTROL_TOKEN": self.bot_token,
            "SELCONTROL_CACHE_DIR": str(data / "selcontrol"),
            "ENABLE_PROMPTS_V2": "true",
            "PROMPTS_V2_ROLLOUT_PERCENTAGE": str(PERCENTAGE),
            "PROMPTS_V2_SIMPLIFIED_ROLLOUT_PERCENTAGE": str(SIMPLIFIED),
            "DATABASE_URL": f"sqlite+aiosqlite:///{data}/sel.db",
            "HIM_MEMORY_DIR": str(data / "him_store"),
            "SEL_DATA_DIR": str(data),
            "SEL_MODEL_DATASET_DIR": str(data / "dataset"),
            "AGENTS_DIR": str(self.copy / "agents"),
            "HIM_API_ENABLED": "false",
            "USE_HIM_HORMONES": "false",
            "DISCORD_BATCH_WINDOW_SECONDS": "0.4",
            # background loops that talk to Discord or run for minutes: off for the check
            "SEAL_ENABLED": "false",
            "SEL_MODEL_DATASET_AUTO_EXPORT_ENABLED": "false",
            "SEL_MODEL_DATASET_EXPORT_ON_START": "false",
            "SEL_BEHAVIOR_ADAPTATION_ENABLED": "false",
            "SEL_INTEROCEPTION_ENABLED": "false",
            "SEL_DREAM_ENABLED": "false",
            "SEL_STATUS_THOUGHTS_ENABLED": "false",
            "SEL_PROFILE_BIO_UPDATES_ENABLED": "false",
            "VOICE_AUTO_LEAVE_ENABLED": "false",
            "SEL_DISCORD_REACTIONS_ENABLED": "false",
        }
        data.mkdir(parents=True, exist_ok=True)
        (self.bot_dir / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        probe = run(
            [
                str(self.py),
                "-c",
                "from sel_bot.config import Settings; s = Settings(); "
                "print(bool(s.selcontrol_url and s.selcontrol_token))",
            ],
            cwd=self.bot_dir,
            capture_output=True,
            text=True,
            check=False,
            env=self.bot_process_env(),
        )
        self.record(
            "the bot's Settings() loads with SELCONTROL_* in .env",
            "True",
            (probe.stdout.strip() or probe.stderr.strip()[-200:]),
            probe.stdout.strip() == "True",
        )

    def bootstrap_matches(self) -> None:
        """Before its first sync the client decides as the bot's own rule did, from the bot's
        real Settings (issue 14: 4,486 of 5,000 channels differed; 963 with an empty value)."""
        probe = """
import sys
from selcontrol_client import AsyncSelControl, legacy_settings_document
from sel_bot.config import Settings
s = Settings()
sc = AsyncSelControl(None, None, bootstrap=legacy_settings_document(s), config_cache=None,
                     spool_dir=None, report=False)
ids = [str(10**17 + n * 104729) for n in range(5000)]
print(sum(sc.prompt_variant(c) != s.select_prompt_variant(c) for c in ids))
"""
        for label, extra in (
            ("as in .env", {}),
            ("ENABLE_PROMPTS_V2= (empty)", {"ENABLE_PROMPTS_V2": ""}),
        ):
            out = run(
                [str(self.py), "-c", probe],
                cwd=self.bot_dir,
                capture_output=True,
                text=True,
                check=False,
                env={**self.bot_process_env(), **extra},
            )
            self.record(
                f"before the first sync: 5,000 channels, {label}",
                "0 differ",
                f"{out.stdout.strip() or out.stderr.strip()[-80:]} differ",
                out.stdout.strip() == "0",
            )

    def channels(self) -> list[str]:
        """Two channels of each variant under the bot's values."""
        rule = assignment.rule_from_config(
            legacy_document(True, PERCENTAGE, SIMPLIFIED)["rollouts"][0]
        )
        wanted = {"v1": [], "v2_full": [], "v2_simplified": []}
        n = 100000000000000000
        while any(len(v) < 2 for v in wanted.values()):
            n += 7919
            variant = assignment.decide(rule, str(n))[0]
            if len(wanted[variant]) < 2:
                wanted[variant].append(str(n))
        return [
            wanted["v2_full"][0],
            wanted["v1"][0],
            wanted["v2_simplified"][0],
            wanted["v2_full"][1],
            wanted["v1"][1],
            wanted["v2_simplified"][1],
        ]

    @staticmethod
    def bot_process_env() -> dict:
        """The bot reads its settings from its .env; none of selcontrol's variables (the
        environment wins over .env in pydantic-settings: DATABASE_URL would be selcontrol's)."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
        return {k: os.environ[k] for k in keep if k in os.environ}

    def life(self, n: int, channels: list[str]) -> dict:
        ledger = self.work / f"ledger-{n}.json"
        log = (self.work / f"bot-{n}.log").open("wb")
        proc = subprocess.Popen(
            [
                str(self.py),
                str(ROOT / "scripts" / "sel_check_driver.py"),
                "--life",
                str(n),
                "--ledger",
                str(ledger),
                "--channels",
                ",".join(channels),
            ],
            cwd=self.bot_dir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=self.bot_process_env(),
        )
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            line = line.strip()
            if line == "OUTAGE":
                self.stop_server()
                proc.stdin.write("OK\n")
                proc.stdin.flush()
        code = proc.wait(120)
        if code != 0 or not ledger.exists():
            tail = (self.work / f"bot-{n}.log").read_text()[-3000:]
            sys.exit(f"the bot's run {n} failed (exit {code}):\n{tail}")
        return json.loads(ledger.read_text())

    # -- comparison -----------------------------------------------------------------------------

    def record(self, case: str, bot: str, selcontrol: str, ok: bool) -> None:
        self.results.append((case, bot, selcontrol, ok))

    def compare(self, lives: list[dict]) -> None:
        os.environ.update(self.server_env())
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selcontrol.settings")
        import django

        django.setup()
        from metrics.models import FollowupEvent, ReactionEvent, ResponseEvent

        replies = [r for life in lives for r in life["replies"]]
        reactions = [r for life in lives for r in life["reactions"]]
        followups = [f for life in lives for f in life["followups"]]
        errors = [e for life in lives for e in life["errors"]]
        self.record("the bot's scenario ran without errors", "[]", str(errors)[:120], not errors)

        stored = {r.message_id: r for r in ResponseEvent.objects.all()}
        expected = {r["primary"]: r for r in replies}
        kinds = Counter(r["kind"] for r in replies)
        self.record(
            f"replies and pings stored exactly once ({kinds['reply']} replies, "
            f"{kinds['ping']} ping)",
            str(len(expected)),
            str(len(stored)),
            set(stored) == set(expected),
        )
        multi = [r for r in replies if len(r["parts"]) > 1]
        later_parts = [p for r in multi for p in r["parts"][1:]]
        as_replies = ResponseEvent.objects.filter(message_id__in=later_parts).count()
        self.record(
            "multi-part replies: one reply for all their parts",
            f"{len(multi)} replies, {sum(len(r['parts']) for r in multi)} parts",
            f"{sum(1 for r in multi if r['primary'] in stored)} replies, {as_replies} extra",
            all(r["primary"] in stored for r in multi) and as_replies == 0,
        )
        wrong = [
            m for m, r in expected.items() if m in stored and stored[m].variant != r["variant"]
        ]
        variants = Counter(r["variant"] for r in replies)
        self.record(
            "each reply under the prompt variant the bot used",
            str(dict(variants)),
            f"{len(wrong)} differ",
            not wrong and None not in variants,
        )
        in_tokens = sum(r.input_tokens for r in stored.values())
        out_tokens = sum(r.output_tokens for r in stored.values())
        charged = [0, 0]
        for life in lives:
            for model, (p, c) in life["llm_charged"].items():
                if model == BOT_MODEL:
                    charged[0] += p
                    charged[1] += c
        self.record(
            "tokens: what OpenRouter charged the main model",
            str(charged),
            str([in_tokens, out_tokens]),
            charged == [in_tokens, out_tokens],
        )
        cost = sum(float(r.cost_usd) for r in stored.values())
        unpriced = sum(1 for r in stored.values() if r.unpriced)
        models = sorted({r.model for r in stored.values()})
        self.record(
            f"cost non-zero, priced for {BOT_MODEL}",
            f"{models}",
            f"${cost:.6f}, {unpriced} unpriced",
            cost > 0 and unpriced == 0 and models == [BOT_MODEL],
        )

        rows = list(ReactionEvent.objects.all())
        self.record(
            "reactions stored exactly once (adds and removals)",
            str(len(reactions)),
            str(len(rows)),
            len(rows) == len(reactions),
        )
        misplaced = [r for r in rows if r.message_id not in expected or not r.attributed]
        on_parts = sum(1 for r in reactions if r["message"] != r["primary"])
        self.record(
            "reactions on any part counted for the reply",
            f"{on_parts} on parts 2..n",
            f"{len(misplaced)} unattributed",
            not misplaced,
        )
        bot_sent = [r for r in reactions if r["action"] == "add"]
        differ = []
        by_key = {(r.message_id, r.user_id, r.emoji, r.action): r for r in rows}
        for r in bot_sent:
            row = by_key.get((r["primary"], r["user"], r["emoji"], "add"))
            want = {"positive": 1, "negative": -1}.get(r["bot_sentiment"])
            if row is None or row.sentiment != want:
                differ.append((r["emoji"], r["bot_sentiment"], getattr(row, "sentiment", None)))
        self.record(
            "sentiment of every reaction as the bot's on_reaction_add counted it",
            f"{Counter(r['bot_sentiment'] for r in bot_sent)}",
            f"{len(differ)} differ {differ[:3]}",
            not differ,
        )

        # net reactions after removals, per variant, against the summary API
        net: dict[tuple, int] = {}
        for r in reactions:
            key = (r["primary"], r["user"], r["emoji"])
            net[key] = 1 if r["action"] == "add" else 0
        want_pos, want_neg = Counter(), Counter()
        for (primary, _user, emoji), alive in net.items():
            if alive:
                variant = expected[primary]["variant"]
                sentiment = next(
                    x["bot_sentiment"]
                    for x in bot_sent
                    if x["primary"] == primary and x["emoji"] == emoji
                )
                (want_pos if sentiment == "positive" else want_neg)[variant] += 1
        summary = self.summary()
        got_pos = Counter(
            {
                v: f["reactions"]["positive"]
                for v, f in summary.items()
                if f["reactions"]["positive"]
            }
        )
        got_neg = Counter(
            {
                v: f["reactions"]["negative"]
                for v, f in summary.items()
                if f["reactions"]["negative"]
            }
        )
        self.record(
            "summary: positive reactions per variant after removals",
            str(dict(want_pos)),
            str(dict(got_pos)),
            want_pos == got_pos,
        )
        self.record(
            "summary: negative reactions per variant",
            str(dict(want_neg)),
            str(dict(got_neg)),
            want_neg == got_neg,
        )

        fu_rows = {f.message_id: f for f in FollowupEvent.objects.all()}
        self.record(
            "follow-ups: one per user message replying to Sel (batches included)",
            str(len(followups)),
            str(len(fu_rows)),
            set(fu_rows) == {f["message"] for f in followups},
        )
        pointed = [
            f
            for f in followups
            if f["message"] in fu_rows
            and fu_rows[f["message"]].reply_to == f["primary"]
            and fu_rows[f["message"]].attributed
        ]
        self.record(
            "follow-ups on part 2..n point at the reply",
            str(len(followups)),
            str(len(pointed)),
            len(pointed) == len(followups),
        )
        want_corr = Counter(
            expected[f["primary"]]["variant"]
            for f in followups
            if re.match(r"^\W*(actually|no)\b", f["text"], re.I)
        )
        got_corr = Counter({v: f["corrections"] for v, f in summary.items() if f["corrections"]})
        self.record(
            "summary: corrections per variant",
            str(dict(want_corr)),
            str(dict(got_corr)),
            want_corr == got_corr,
        )

        delays = [d for life in lives for d in life["spool_delays"]]
        worst = max(delays) if delays else None
        self.record(
            f"outage: {len(delays)} events on disk within spool_after ({SPOOL_AFTER:g} s)",
            f"<= {SPOOL_AFTER:g} s",
            f"max {worst:.2f} s" if worst is not None else "none",
            bool(delays) and min(delays) >= 0 and worst <= SPOOL_AFTER,
        )
        stats = [life.get("selcontrol_stats", {}) for life in lives]
        self.record(
            "SIGTERM (server down, then up): nothing dropped, nothing left in memory",
            "dropped 0, buffered 0",
            str([(s.get("dropped"), s.get("buffered"), s.get("spool_pending")) for s in stats]),
            all(s.get("dropped") == 0 and s.get("buffered") == 0 for s in stats)
            and stats[-1].get("spool_pending") == 0,
        )
        sigterm_replies = [r for life in lives for r in life["replies"][-1:]]
        self.record(
            "the reply in progress at each SIGTERM was recorded",
            str(len(sigterm_replies)),
            str(sum(1 for r in sigterm_replies if r["primary"] in stored)),
            all(r["primary"] in stored for r in sigterm_replies),
        )

    def summary(self) -> dict:
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        until = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        for _ in range(50):
            answer = httpx.get(
                f"{self.url}/api/v1/rollouts/{DEFAULT_ROLLOUT}/summary",
                params={"since": since, "until": until},
                timeout=10,
                headers={"Authorization": f"Bearer {self.bot_token}"},
            )
            if answer.status_code == 200:
                return answer.json()["variants"]
            time.sleep(0.2)
        raise RuntimeError(answer.text)

    # -- all of it ------------------------------------------------------------------------------

    def main(self) -> int:
        started = time.monotonic()
        try:
            self.copy_and_patch()
            self.bot_env()
            self.database()
            self.start_server()
            self.step0()
            self.write_env()
            self.bootstrap_matches()
            channels = self.channels()
            first = self.life(1, channels)
            self.start_server()  # back after the outage (the first life ended with it down)
            second = self.life(2, channels)
            time.sleep(1.0)
            self.compare([first, second])
        finally:
            self.stop_server()
            if "django.db" in sys.modules:  # compare() held connections into the database
                from django.db import connections

                connections.close_all()
            if not self.args.keep:
                run(
                    ["psql", self.pg, "-qc", f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'],
                    check=False,
                    capture_output=True,
                )
                shutil.rmtree(self.work, ignore_errors=True)
        width = max(len(c) for c, *_ in self.results)
        print(
            f"sel-check: the Sel bot ({self.args.sel}) patched with docs/sel-bot.patch, "
            f"against selcontrol on PostgreSQL ({time.monotonic() - started:.0f} s)"
        )
        print(f"{'case':<{width}}  {'bot did':<28}  {'selcontrol counted':<28}  result")
        for case, bot, counted, ok in self.results:
            print(f"{case:<{width}}  {bot:<28}  {counted:<28}  {'PASS' if ok else 'FAIL'}")
        failed = sum(1 for *_, ok in self.results if not ok)
        print(f"{len(self.results) - failed} passed, {failed} failed")
        if self.args.keep:
            print(f"kept: {self.work} and database {self.db}")
        return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sel", required=True, help="a checkout of the Sel bot (4inzler/SEL)")
    parser.add_argument("--venv", help="the bot's virtualenv (default $SEL_VENV, else a temp dir)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SEL_CHECK_PORT", 8800)))
    parser.add_argument("--keep", action="store_true", help="keep the copy, logs and database")
    sys.exit(Check(parser.parse_args()).main())


if __name__ == "__main__":
    main()
