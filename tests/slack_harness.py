"""Test helpers for the Slack layer: canned answers, a fake answerer, Slack-shaped payloads,
Slack-style request signing, and the Bolt app served over real HTTP on 127.0.0.1.

Used by tests/test_app.py, tests/test_listeners.py, tests/test_serve.py and scripts/bench_slack.py.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from bot.config import Config, InstitutionSettings, config_from_dict
from bot.records import Answer, AnswerStatus, Citation, Confidence, Passage
from bot.slack.app import app_deps, create_app, stop_app_workers
from bot.slack.serve import EVENTS_PATH, finish_serving, make_http_server, run_socket_mode, start_serving
from bot.state import StateStore
from tests.fake_slack import BOT_USER_ID, TEAM_ID, FakeSlack

SECRET = "secret"
USER = "U0ASKER"
CHANNEL = "C0GENERAL"
DM = "D0ASKER"
CONTACT = InstitutionSettings().contact()  # the defaults the test configs use too
_ids = itertools.count(1)


# -- answers ---------------------------------------------------------------------------------


def make_answer(
    question: str, *, passages: int = 2, text: str | None = None, status=AnswerStatus.ANSWERED
) -> Answer:
    """A canned answer with ``passages`` cited passages (or a "not covered" one)."""
    if status is not AnswerStatus.ANSWERED:
        message = f"Our guidance doesn't cover this, so I won't guess. Ask the {CONTACT.team_name}."
        return Answer(question, status, Confidence.NONE, (), (), CONTACT, message)
    found = tuple(_passage(n, text) for n in range(1, passages + 1))
    cited = tuple(_citation(n) for n in range(1, passages + 1))
    return Answer(question, status, Confidence.HIGH, found, cited, CONTACT, "Here is what our guidance says.")


def _passage(number: int, text: str | None) -> Passage:
    body = text or (
        f"Passage {number} opening words. You need an export licence before sharing controlled "
        "technology abroad. Ask the team if you are unsure."
    )
    highlight = "You need an export licence before sharing controlled technology abroad."
    return Passage(
        number, f"export-controls.md#{number}", body, (highlight,) if highlight in body else (), 0.7
    )


def _citation(number: int) -> Citation:
    return Citation(
        number=number,
        title=f"Export controls {number}",
        section="Do I need a licence?",
        url=f"https://www.example.ac.uk/guidance/export-controls-{number}",
        path=f"export-controls-{number}.md",
        last_reviewed="2026-03-01",
    )


class FakeAnswerer:
    """Records each (question, context) and returns ``reply(question, context)``; thread-safe."""

    def __init__(self, reply: Callable[[str, str | None], Answer] | None = None) -> None:
        self.reply = reply or (lambda question, context: make_answer(question))
        self.calls: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def answer(self, question: str, context: str | None = None) -> Answer:
        with self._lock:
            self.calls.append((question, context))
        return self.reply(question, context)


# -- config ----------------------------------------------------------------------------------


def make_config(api_url: str, tmp_path: Path, **slack: Any) -> Config:
    config = config_from_dict({"slack": {"api_url": api_url, **slack}})
    paths = replace(
        config.paths,
        state_db=tmp_path / "state.db",
        index_db=tmp_path / "index.db",
        watchlist_db=tmp_path / "watchlists.db",  # `trbot serve` opens it (pre-screening)
    )
    return replace(config, paths=paths)


# -- payloads, in the shape Slack sends them -------------------------------------------------


def new_ts() -> str:
    return f"{1_710_000_000 + next(_ids)}.{next(_ids):06d}"


def envelope(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "context_team_id": TEAM_ID,
        "api_app_id": "A0TRBOT",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_ids):010d}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-eyJldCI6ImFwcF9tZW50aW9uIn0",
    }


def mention_event(
    text: str, *, channel: str = CHANNEL, user: str = USER, thread_ts: str | None = None
) -> dict:
    ts = new_ts()
    event = {
        "client_msg_id": f"msg-{ts}",
        "type": "app_mention",
        "text": f"<@{BOT_USER_ID}> {text}",
        "user": user,
        "ts": ts,
        "team": TEAM_ID,
        "channel": channel,
        "event_ts": ts,
    }
    return event | ({"thread_ts": thread_ts} if thread_ts else {})


def message_event(
    text: str,
    *,
    channel: str = CHANNEL,
    channel_type: str = "channel",
    user: str = USER,
    thread_ts: str | None = None,
) -> dict:
    ts = new_ts()
    event = {
        "client_msg_id": f"msg-{ts}",
        "type": "message",
        "text": text,
        "user": user,
        "ts": ts,
        "team": TEAM_ID,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    return event | ({"thread_ts": thread_ts, "parent_user_id": USER} if thread_ts else {})


def dm_event(text: str, *, channel: str = DM, thread_ts: str | None = None) -> dict:
    return message_event(text, channel=channel, channel_type="im", thread_ts=thread_ts)


def bot_message_event(text: str, *, channel: str = CHANNEL) -> dict:
    ts = new_ts()
    return {
        "type": "message",
        "subtype": "bot_message",
        "text": text,
        "ts": ts,
        "username": "Another bot",
        "bot_id": "B0OTHER",
        "channel": channel,
        "event_ts": ts,
        "channel_type": "channel",
    }


def user_bot_message_event(text: str, *, channel: str = DM, user: str = "U0OTHERBOT") -> dict:
    """A message posted by another app's bot user (no subtype, but bot_id and bot_profile)."""
    event = message_event(text, channel=channel, channel_type="im", user=user)
    return event | {
        "bot_id": "B0OTHER",
        "app_id": "A0OTHER",
        "bot_profile": {"id": "B0OTHER", "name": "other"},
    }


def edited_event(text: str, *, channel: str = DM, channel_type: str = "im") -> dict:
    ts = new_ts()
    original = {"type": "message", "text": "old", "user": USER, "ts": ts, "team": TEAM_ID}
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": original | {"text": text, "edited": {"user": USER, "ts": new_ts()}},
        "previous_message": original,
        "channel": channel,
        "hidden": True,
        "ts": new_ts(),
        "event_ts": new_ts(),
        "channel_type": channel_type,
    }


def deleted_event(*, channel: str = DM) -> dict:
    ts = new_ts()
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "deleted_ts": ts,
        "channel": channel,
        "previous_message": {"type": "message", "text": "gone", "user": USER, "ts": ts},
        "ts": new_ts(),
        "event_ts": new_ts(),
        "channel_type": "im",
    }


def home_opened_event(user: str = USER, tab: str = "home") -> dict:
    return {"type": "app_home_opened", "user": user, "channel": DM, "tab": tab, "event_ts": new_ts()}


def command_form(
    text: str, response_url: str, *, channel: str = CHANNEL, command: str = "/trusted-research"
) -> dict:
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "team_domain": "example",
        "channel_id": channel,
        "channel_name": "general",
        "user_id": USER,
        "user_name": "asker",
        "command": command,
        "text": text,
        "api_app_id": "A0TRBOT",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": f"{next(_ids)}.trigger",
    }


def block_actions(
    action_id: str, value: str, response_url: str, *, channel: str = CHANNEL, ephemeral=False
) -> dict:
    container = {"type": "message", "message_ts": new_ts(), "channel_id": channel, "is_ephemeral": ephemeral}
    payload = {
        "type": "block_actions",
        "user": {"id": USER, "username": "asker", "name": "asker", "team_id": TEAM_ID},
        "api_app_id": "A0TRBOT",
        "token": "legacy-verification-token",
        "container": container,
        "trigger_id": f"{next(_ids)}.trigger",
        "team": {"id": TEAM_ID, "domain": "example"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "general"},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": "trbot_answer_actions",
                "text": {"type": "plain_text", "text": "button", "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": new_ts(),
            }
        ],
    }
    if not ephemeral:
        payload["message"] = {
            "type": "message",
            "ts": container["message_ts"],
            "text": "answer",
            "user": BOT_USER_ID,
        }
    return payload


def view_submission(callback_id: str, private_metadata: str, reason: str | None, *, user: str = USER) -> dict:
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "example"},
        "user": {"id": user, "username": "asker", "name": "asker", "team_id": TEAM_ID},
        "api_app_id": "A0TRBOT",
        "token": "legacy-verification-token",
        "trigger_id": f"{next(_ids)}.trigger",
        "view": {
            "id": "V0MODAL",
            "team_id": TEAM_ID,
            "type": "modal",
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}},
            "hash": "1.abc",
            "title": {"type": "plain_text", "text": "Feedback"},
            "blocks": [],
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_submission_values(
    callback_id: str, values: dict[str, Any], *, private_metadata: str = "", user: str = USER
) -> dict:
    """A view_submission whose inputs (block id = action id) hold ``values``: text for plain-text
    inputs, ``{"select": value}`` for a static select, None for an empty input."""
    state: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, dict) and "select" in value:
            option = {"value": value["select"], "text": {"type": "plain_text", "text": value["select"]}}
            element = {"type": "static_select", "selected_option": option if value["select"] else None}
        else:
            element = {"type": "plain_text_input", "value": value}
        state[name] = {name: element}
    payload = view_submission(callback_id, private_metadata, None, user=user)
    payload["view"]["state"] = {"values": state}
    return payload


def shortcut_payload(callback_id: str, *, user: str = USER) -> dict:
    """A global shortcut, in the shape Slack sends it."""
    return {
        "type": "shortcut",
        "token": "legacy-verification-token",
        "action_ts": new_ts(),
        "team": {"id": TEAM_ID, "domain": "example"},
        "user": {"id": user, "username": "asker", "team_id": TEAM_ID},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": f"{next(_ids)}.trigger",
    }


# -- signing and posting ---------------------------------------------------------------------


def signed_headers(
    body: str, content_type: str, *, secret: str = SECRET, timestamp: int | None = None
) -> dict:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature or "",
    }


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def post(url: str, body: str, headers: dict[str, str]) -> HttpResult:
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return HttpResult(response.status, response.read().decode(), time.perf_counter() - started)
    except urllib.error.HTTPError as error:
        return HttpResult(error.code, error.read().decode(), time.perf_counter() - started)


class TrackingExecutor(ThreadPoolExecutor):
    """A listener executor whose tests can wait until every submitted listener has finished."""

    def __init__(self, max_workers: int = 8) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="listener")
        self._futures: list[Future] = []
        self._futures_lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future = super().submit(fn, *args, **kwargs)
        with self._futures_lock:
            self._futures.append(future)
        return future

    def wait_idle(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._futures_lock:
                pending = [future for future in self._futures if not future.done()]
            if not pending:
                return
            _done, not_done = wait(pending, timeout=max(deadline - time.monotonic(), 0))
            if not_done:
                raise AssertionError(f"{len(not_done)} listener(s) still running after {timeout}s")


class AppServer:
    """The Bolt app from ``create_app`` behind the production WSGI server, on 127.0.0.1."""

    def __init__(
        self,
        config: Config,
        answerer: Any,
        fake: FakeSlack,
        store: StateStore | None = None,
        **app_options: Any,
    ) -> None:
        self.config = config
        self.fake = fake
        self.store = store or StateStore(config.paths.state_db)
        self.executor = TrackingExecutor()
        self.app = create_app(
            config,
            answerer,
            self.store,
            token="xoxb-test",
            signing_secret=SECRET,
            token_verification_enabled=False,
            listener_executor=self.executor,
            **app_options,  # e.g. triager=... (create_app's keyword arguments)
        )
        self.server = make_http_server(self.app, "127.0.0.1", 0, settings=config.slack)
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="trbot-http", daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{EVENTS_PATH}"

    @property
    def deps(self):
        return app_deps(self.app)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.executor.wait_idle()
        self.executor.shutdown(wait=True)
        stop_app_workers(self.app)
        self.deps.outbox.close()

    def post_json(self, payload: dict, *, headers: dict[str, str] | None = None, **sign: Any) -> HttpResult:
        body = json.dumps(payload)
        return post(self.url, body, signed_headers(body, "application/json", **sign) | (headers or {}))

    def post_event(
        self, event: dict, *, event_id: str | None = None, retry_num: int | None = None
    ) -> HttpResult:
        headers = (
            {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else {}
        )
        return self.post_json(envelope(event, event_id), headers=headers)

    def post_form(self, fields: dict[str, str], **sign: Any) -> HttpResult:
        body = urlencode(fields)
        return post(self.url, body, signed_headers(body, "application/x-www-form-urlencoded", **sign))

    def post_command(self, text: str, **kwargs: Any) -> HttpResult:
        return self.post_form(command_form(text, self.fake.response_url("command"), **kwargs))

    def post_interaction(self, payload: dict) -> HttpResult:
        return self.post_form({"payload": json.dumps(payload)})

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every listener started so far has finished, the answering queue is empty
        and the outbox has nothing due (messages waiting for a later retry stay queued)."""
        self.executor.wait_idle(timeout)
        assert self.deps.work.wait_idle(timeout), "the answering queue did not empty"
        wait_for_outbox(self.deps.outbox, timeout)


def wait_for_outbox(outbox: Any, timeout: float = 10.0) -> None:
    """Wait until no outbox message is due now or being sent (the worker has caught up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        due = outbox.seconds_until_due()
        if due is None or (due > 0.5 and not outbox.counts()["sending"]):
            return
        time.sleep(0.02)
    raise AssertionError(f"the outbox still had messages to send after {timeout}s: {outbox.counts()}")


def stored_value(
    store: StateStore, question: str, *, user: str = USER, channel: str = CHANNEL, **answer: Any
) -> str:
    """A button value for a canned answer kept in ``store`` (as the bot keeps every answer it sends)."""
    from bot.slack.answers_render import encode_action_value

    answer_id = store.save_answer(make_answer(question, **answer), user=user, channel=channel)
    return encode_action_value(answer_id)


# -- Slack's limits --------------------------------------------------------------------------


def assert_within_slack_limits(blocks: list[dict]) -> None:
    """Every limit the renderer promises: 50 blocks, 3,000-char texts, 2,000-char values, labels."""
    assert len(blocks) <= 50, len(blocks)
    for block in blocks:
        if block["type"] == "section":
            assert "text" in block or "fields" in block, block
            assert len(block.get("text", {}).get("text", "")) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(len(field["text"]) <= 2000 for field in block.get("fields", []))
        if block["type"] == "context":
            assert all(len(element["text"]) <= 3000 for element in block["elements"])
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        for element in block.get("elements", []):
            if element.get("type") == "button":
                assert len(element["value"]) <= 2000
                assert len(element["text"]["text"]) <= 75
                json.loads(element["value"])


def all_text(call_body: dict) -> str:
    """Everything Slack renders from a Web API call body (not button values or metadata), as one string."""
    return json.dumps(
        _rendered({key: call_body.get(key) for key in ("text", "blocks", "view", "attachments")}),
        ensure_ascii=False,
    )


def _rendered(item: Any) -> Any:
    if isinstance(item, dict):
        return {
            key: _rendered(value) for key, value in item.items() if key not in ("value", "private_metadata")
        }
    if isinstance(item, list):
        return [_rendered(value) for value in item]
    return item


class SocketBot:
    """The app served over Socket Mode in a thread, started and stopped as ``trbot serve`` does."""

    def __init__(self, config, answerer, app_token: str) -> None:
        self.config = config
        self.store = StateStore(config.paths.state_db)
        self.app = create_app(
            config,
            answerer,
            self.store,
            token="xoxb-test",
            token_verification_enabled=False,
            start_workers=False,
        )
        start_serving(self.app, config)
        self.stopping = threading.Event()
        self.thread = threading.Thread(
            target=run_socket_mode, args=(self.app, app_token), kwargs={"stop": self.stopping}, daemon=True
        )
        self.thread.start()

    @property
    def deps(self):
        return app_deps(self.app)

    def settle(self, timeout: float = 10.0) -> None:
        assert self.deps.work.wait_idle(timeout)
        wait_for_outbox(self.deps.outbox, timeout)

    def stop(self) -> None:
        """What SIGTERM does: stop taking events, hand over queued work, drain the outbox."""
        self.stopping.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        finish_serving(self.app, self.config)
        self.deps.outbox.close()
        self.store.close()
