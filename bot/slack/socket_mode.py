"""The Socket Mode client: bolt's websocket-client adapter, made to hold its connection.

Measured against a local Socket Mode server (tests/fake_socket_mode.py, scripts/bench_socket_mode.py),
slack_sdk's built-in client took 50-59 s to reconnect after a dropped TCP link, spinning a core,
and acked late after a refresh. bolt's ``websocket_client`` adapter reconnects within a second;
this module adds what it still lacked:

- a ping timeout, so a half-open link (nothing arrives, nothing is closed) is noticed and replaced
  within seconds, without waiting 3 s for a close handshake on the dead link;
- no second connection while a new one is starting (its monitor opened one);
- on ``refresh_requested``, the new connection is opened and started at once and the old one is
  kept open for ``REFRESH_GRACE`` seconds, so envelopes already on their way on it are still read;
- reconnects after failures back off (0.5 s doubling up to 4 s) instead of retrying in a loop;
- each ack goes back on the connection its envelope came on (or the current one, waiting briefly
  for a reconnect in progress), where slack_sdk's client dropped acks sent while its new
  connection was starting.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler
from slack_sdk.socket_mode.websocket_client import SocketModeClient
from websocket import WebSocketConnectionClosedException, WebSocketException, WebSocketTimeoutException

# The client's records (slack_sdk's code logs envelopes at DEBUG) go under the library's own name,
# so the log redaction for the Slack libraries (bot.slack.http.install_log_redaction) covers them.
logger = logging.getLogger("slack_sdk.socket_mode.websocket_client")

# A ping every PING_INTERVAL seconds; a link with no pong within PING_TIMEOUT is dead.
PING_INTERVAL = 2.5
PING_TIMEOUT = 1.5
# After refresh_requested, the old connection stays open this long (Slack closes it ~10 s later).
REFRESH_GRACE = 10.0
# An ack waits this long for a connection to send it on (a reconnect in progress).
SEND_WAIT = 2.5
# Reconnecting after a failure: at once the first time, then waits doubling from RECONNECT_FIRST
# up to RECONNECT_MAX while connections keep failing (no busy loop during an outage, and back
# within seconds when Slack is).
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 4.0
_STARTING = 2.0  # a connection this young counts as connected (it is still opening)
_ORIGINS = 2000  # envelopes whose connection is remembered, at most


class KeepaliveClient(SocketModeClient):
    """slack_sdk's websocket-client Socket Mode client with the fixes in the module docstring."""

    def __init__(self, *args: Any, ping_timeout: float = PING_TIMEOUT, **kwargs: Any) -> None:
        self.ping_timeout = ping_timeout
        self._opened_at = 0.0
        # The connections started (each is read in its own thread, and never started twice).
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._ended: weakref.WeakSet[Any] = weakref.WeakSet()  # ...and those whose link has ended
        self._sessions_lock = threading.Lock()
        self._origins: OrderedDict[str, Any] = OrderedDict()
        self._failures = 0  # connections that failed since one last opened
        self._last_attempt = 0.0
        self._closing = threading.Event()
        kwargs.setdefault("on_error_listeners", []).extend([_abort_dead_link, self._mark_ended])
        kwargs.setdefault("on_open_listeners", []).append(self._opened)
        kwargs.setdefault("on_message_listeners", []).append(self._remember_origin)
        super().__init__(*args, **kwargs)

    # -- connections -----------------------------------------------------------------------
    def connect_to_new_endpoint(self, force: bool = False) -> None:
        if not force and self._failures > 1:  # a reconnect after repeated failures: back off
            delay = min(RECONNECT_MAX, RECONNECT_FIRST * 2 ** (self._failures - 2))
            wait = self._last_attempt + delay - time.monotonic()
            if wait > 0 and self._closing.wait(wait):
                return
        if self.closed:
            return
        self._last_attempt = time.monotonic()
        super().connect_to_new_endpoint(force)

    def _opened(self, session: Any) -> None:
        self._failures = 0

    def connect(self) -> None:
        old = self.current_session
        self.current_session = None  # slack_sdk would close the old connection at once
        self._opened_at = time.monotonic()  # its monitor starts inside connect()
        try:
            super().connect()
        except BaseException:
            self.current_session = old
            raise
        self._opened_at = time.monotonic()
        self._start(self.current_session)
        if old is not None and old is not self.current_session:
            if _is_open(old):  # a refresh: let what is on its way on the old link arrive
                timer = threading.Timer(REFRESH_GRACE, _close_quietly, [old])
                timer.daemon = True
                timer.start()
            else:
                _close_quietly(old)

    def is_connected(self) -> bool:
        session = self.current_session
        starting = (
            session is not None
            and session not in self._ended
            and time.monotonic() - self._opened_at < _STARTING
        )
        return starting or super().is_connected()

    def _run_current_session(self) -> None:
        # slack_sdk's runner calls this every 0.5 s; each connection already runs in its own thread.
        session = self.current_session
        if session is not None:
            self._start(session)

    def _start(self, session: Any) -> None:
        with self._sessions_lock:
            if session is None or session in self._sessions or self.closed:
                return
            self._sessions.add(session)
        threading.Thread(target=self._read, args=(session,), name="trbot-socket-mode", daemon=True).start()

    def _read(self, session: Any) -> None:
        try:
            self.logger.info("Starting to receive messages from a new connection")
            session.run_forever(ping_interval=self.ping_interval, ping_timeout=self.ping_timeout)
            self.logger.info("Stopped receiving messages from a connection")
        except Exception as exc:
            self.logger.error("Socket Mode connection failed: %s", type(exc).__name__)
            _close_quietly(session)
        finally:
            self._ended.add(session)

    def _mark_ended(self, session: Any, error: Exception) -> None:
        # on_error comes before on_close, whose reconnect must not take this link for one starting
        self._ended.add(session)
        if session is self.current_session:
            self._failures += 1

    def close(self) -> None:
        self._closing.set()
        super().close()
        with self._sessions_lock:
            sessions = list(self._sessions)
        for session in sessions:
            _close_quietly(session)

    # -- acks --------------------------------------------------------------------------------
    def _remember_origin(self, session: Any, message: str) -> None:
        envelope_id = _envelope_id(message)
        if envelope_id:
            self._origins[envelope_id] = session
            while len(self._origins) > _ORIGINS:
                self._origins.popitem(last=False)

    def send_message(self, message: str) -> None:
        origin = self._origins.pop(_envelope_id(message) or "", None)
        deadline = time.monotonic() + SEND_WAIT
        while True:
            for session in (origin, self.current_session):
                if _is_open(session):
                    try:
                        session.send(message)
                        return
                    except WebSocketException:
                        continue
            if time.monotonic() >= deadline or self.closed:
                raise WebSocketConnectionClosedException("no open Socket Mode connection to send on")
            time.sleep(0.02)


class KeepaliveHandler(SocketModeHandler):
    """bolt's websocket-client Socket Mode handler, on ``KeepaliveClient``."""

    def __init__(  # noqa: D107 - SocketModeHandler's, with the client above
        self,
        app: App,
        app_token: str,
        *,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        concurrency: int = 10,
    ) -> None:
        self.app = app
        self.app_token = app_token
        self.client = KeepaliveClient(
            app_token=app_token,
            logger=logger,
            web_client=app.client,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            concurrency=concurrency,
        )
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]


def _abort_dead_link(session: Any, error: Exception) -> None:
    # A ping timed out: the link is dead, so don't wait 3 s for a close handshake on it.
    sock = getattr(session, "sock", None)
    if isinstance(error, WebSocketTimeoutException) and sock is not None:
        try:
            sock.shutdown()
        except OSError:
            pass


def _close_quietly(session: Any) -> None:
    try:
        session.close()
    except Exception:  # already closed, or the link is gone
        pass


def _is_open(session: Any) -> bool:
    sock = getattr(session, "sock", None)
    return sock is not None and bool(getattr(sock, "connected", False))


def _envelope_id(message: str) -> str | None:
    if '"envelope_id"' not in message:
        return None
    try:
        value = json.loads(message).get("envelope_id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None
