"""A local fake of the Slack Web API (and of response_url webhooks) for offline tests.

``FakeSlack`` runs a ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) in a thread, records every
call (method, parsed body, headers, arrival time) and answers like Slack. Point a ``WebClient``
at ``fake.api_url`` and give payloads ``fake.response_url(...)`` as their ``response_url``.

    with FakeSlack() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.api_url)
        client.chat_postMessage(channel="C1", text="hi")
        assert fake.calls_to("chat.postMessage")[0].body["text"] == "hi"
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
TEAM_ID = "T0TEAM"
RESPONSE_PREFIX = "/response/"
# Form fields that slack_sdk sends as JSON strings.
_JSON_FIELDS = ("blocks", "attachments", "view", "metadata")


@dataclass(frozen=True)
class Call:
    """One request the fake received."""

    method: str  # "chat.postMessage", or "response_url" for webhook posts
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.perf_counter)
    status: int = 200
    error: str | None = None
    reply: dict[str, Any] | None = None  # what the fake answered

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass(frozen=True)
class _Outage:
    status: int  # 0: drop the connection without an answer
    methods: frozenset[str] | None  # None: every method (and response_url)
    body: str | None = None  # a non-JSON body (an error page), instead of Slack's JSON


@dataclass
class _Failure:
    status: int
    remaining: int
    retry_after: str | None = None
    error: str | None = None  # a Slack-level error: HTTP 200 with {"ok": false}


class FakeSlack:
    """A fake Slack Web API on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._failures: dict[str, deque[_Failure]] = {}
        self._outage: _Outage | None = None
        # What apps.connections.open answers (tests point it at a local Socket Mode server).
        self.socket_mode_url = "wss://fake.slack.test/link"
        # What usergroups.users.list and conversations.info answer (cases tests set these).
        self.usergroups: dict[str, list[str]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._ts = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-slack", daemon=True
        )

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, name: str = "hook") -> str:
        return f"{self.url}{RESPONSE_PREFIX}{name}"

    # -- scripting -------------------------------------------------------------------------
    def fail_next(
        self, method: str, count: int = 1, *, status: int = 429, retry_after: str | None = "0"
    ) -> None:
        """Answer the next ``count`` calls of ``method`` with HTTP ``status`` (429 sends Retry-After)."""
        failure = _Failure(status, count, retry_after if status == 429 else None)
        with self._cond:
            self._failures.setdefault(method, deque()).append(failure)

    def outage(
        self, status: int = 503, *, drop: bool = False, methods: Any = None, body: str | None = None
    ) -> None:
        """Until ``recover()``: answer every call (or those of ``methods``) with HTTP ``status``, or,
        with ``drop``, close the connection without an answer (Slack unreachable)."""
        with self._cond:
            self._outage = _Outage(0 if drop else status, frozenset(methods) if methods else None, body)

    def recover(self) -> None:
        """End an ``outage``."""
        with self._cond:
            self._outage = None

    def _outage_for(self, method: str) -> _Outage | None:
        with self._cond:
            outage = self._outage
        if outage is None or (outage.methods is not None and method not in outage.methods):
            return None
        return outage

    def error_next(self, method: str, error: str, count: int = 1) -> None:
        """Answer the next ``count`` calls of ``method`` with ``{"ok": false, "error": error}``."""
        with self._cond:
            self._failures.setdefault(method, deque()).append(_Failure(200, count, error=error))

    # -- inspection ------------------------------------------------------------------------
    @property
    def calls(self) -> list[Call]:
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        """The calls of ``method`` that were answered with success."""
        return [call for call in self.calls if call.method == method and call.ok]

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]

    def clear(self) -> None:
        with self._cond:
            self._calls.clear()

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait for ``count`` successful calls of ``method`` and return them; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(found := self._successful(method)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [call.method for call in self._calls]
                    raise AssertionError(
                        f"expected {count} call(s) to {method} within {timeout}s; saw {seen}"
                    )
                self._cond.wait(left)
            return found

    def _successful(self, method: str) -> list[Call]:
        return [call for call in self._calls if call.method == method and call.ok]

    # -- request handling (called from the server's threads) -------------------------------
    def _record(self, call: Call) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def _take_failure(self, method: str) -> _Failure | None:
        with self._cond:
            queue = self._failures.get(method)
            if not queue:
                return None
            failure = queue[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                queue.popleft()
            return failure

    def _reply(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        builder = _REPLIES.get(method)
        return builder(self, body) if builder else {"ok": True}

    def _next_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"


def _handler_for(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self._handle()

        def do_GET(self) -> None:  # noqa: N802
            self._handle()

        def _handle(self) -> None:
            path = urlsplit(self.path).path
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            method = _method_of(path)
            headers = {key.lower(): value for key, value in self.headers.items()}
            body = _parse_body(raw, headers.get("content-type", ""), urlsplit(self.path).query)
            outage = fake._outage_for(method)
            if outage is not None:
                fake._record(Call(method, path, body, headers, status=outage.status, error="outage"))
                if outage.status == 0:
                    self.close_connection = True
                    return
                if outage.body is not None:
                    self._send_text(outage.status, outage.body)
                else:
                    self._send(outage.status, {"ok": False, "error": "service_unavailable"})
                return
            failure = fake._take_failure(method)
            if failure and failure.error:
                status, reply = 200, {"ok": False, "error": failure.error}
            elif failure:
                status, reply = failure.status, {"ok": False, "error": "ratelimited"}
            else:
                status, reply = 200, None if method == "response_url" else fake._reply(method, body)
            error = failure.error if failure else None
            fake._record(Call(method, path, body, headers, status=status, error=error, reply=reply))
            if reply is None:
                self._send_text(200, "ok")
            else:
                self._send(status, reply, failure.retry_after if failure else None)

        def _send(self, status: int, payload: dict[str, Any], retry_after: str | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_text(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
            pass

    return Handler


def _method_of(path: str) -> str:
    if path.startswith(RESPONSE_PREFIX):
        return "response_url"
    return path.removeprefix("/api/").strip("/")


def _parse_body(raw: bytes, content_type: str, query: str) -> dict[str, Any]:
    if "json" in content_type and raw:
        return json.loads(raw.decode("utf-8"))
    fields = {key: values[-1] for key, values in parse_qs(raw.decode("utf-8") or query).items()}
    for name in _JSON_FIELDS:
        if isinstance(fields.get(name), str):
            fields[name] = json.loads(fields[name])
    return fields


def _view_reply(fake: FakeSlack, body: dict[str, Any]) -> dict[str, Any]:
    view = body.get("view") or {}
    return {"ok": True, "view": {"id": f"V{next(fake._ts):08d}", **view}}


_REPLIES: dict[str, Callable[[FakeSlack, dict[str, Any]], dict[str, Any]]] = {
    "auth.test": lambda fake, body: {
        "ok": True,
        "url": "https://fake.slack.test/",
        "team": "Fake Team",
        "user": "trbot",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    },
    "chat.postMessage": lambda fake, body: {
        "ok": True,
        "channel": body.get("channel"),
        "ts": fake._next_ts(),
        "message": {"text": body.get("text", ""), "user": BOT_USER_ID, "bot_id": BOT_ID},
    },
    "chat.postEphemeral": lambda fake, body: {"ok": True, "message_ts": fake._next_ts()},
    "chat.update": lambda fake, body: {
        "ok": True,
        "channel": body.get("channel"),
        "ts": body.get("ts"),
        "text": body.get("text", ""),
    },
    "views.publish": _view_reply,
    "views.open": _view_reply,
    "views.update": _view_reply,
    "conversations.open": lambda fake, body: {"ok": True, "channel": {"id": "D0FAKEDM"}},
    "conversations.replies": lambda fake, body: {"ok": True, "messages": [], "has_more": False},
    "users.info": lambda fake, body: {
        "ok": True,
        "user": {"id": body.get("user"), "name": "someone", "is_bot": False},
    },
    "apps.connections.open": lambda fake, body: {"ok": True, "url": fake.socket_mode_url},
    "chat.getPermalink": lambda fake, body: {
        "ok": True,
        "channel": body.get("channel"),
        "permalink": f"https://fake.slack.test/archives/{body.get('channel')}/p"
        + str(body.get("message_ts", "")).replace(".", ""),
    },
    "usergroups.users.list": lambda fake, body: (
        {"ok": True, "users": fake.usergroups[body.get("usergroup")]}
        if body.get("usergroup") in fake.usergroups
        else {"ok": False, "error": "no_such_subteam"}
    ),
    "conversations.info": lambda fake, body: (
        {"ok": True, "channel": {"id": body.get("channel"), **fake.channels[body.get("channel")]}}
        if body.get("channel") in fake.channels
        else {"ok": False, "error": "channel_not_found"}
    ),
}
