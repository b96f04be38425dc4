"""A local Socket Mode server for tests and benchmarks: Slack's WebSocket side, on 127.0.0.1.

``FakeSocketMode`` speaks the Socket Mode protocol with the ``websockets`` package: on each
connection it sends ``hello``, then whatever envelopes the test sends (``events_api``,
``slash_commands``, ``interactive``) and records the acks (their ``envelope_id`` and arrival
time). Clients reach it through a small TCP relay, so a test can also break the link the way
networks do:

- ``drop()``: reset the TCP connection, with no WebSocket close frame;
- ``blackhole()``: keep the connection open but pass nothing either way (a half-open link);
- ``down()`` / ``up()``: refuse new connections for a while (an outage), then accept again;
- ``refresh()``: send ``disconnect`` with reason ``refresh_requested``, as Slack does hourly.

    with FakeSlack() as api, FakeSocketMode() as ws:
        api.socket_mode_url = ws.url            # what apps.connections.open answers
        ...start the bot's Socket Mode handler...
        ws.wait_connected()
        envelope_id = ws.send_event(mention_event("hi"))
        ws.wait_for_ack(envelope_id)
"""

from __future__ import annotations

import itertools
import json
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.sync.server import ServerConnection, serve

from tests.slack_harness import envelope as event_envelope

_ids = itertools.count(1)


@dataclass
class Envelope:
    envelope_id: str
    type: str
    sent_at: float
    acked_at: float | None = None
    ack: dict[str, Any] | None = None
    connection: int = 0

    @property
    def ack_seconds(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at


@dataclass
class _Link:
    client: socket.socket
    upstream: socket.socket
    holes: threading.Event = field(default_factory=threading.Event)  # set: forward nothing


class FakeSocketMode:
    """The Socket Mode server (behind a TCP relay whose port stays the same across outages)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._connections: list[ServerConnection] = []
        self.connected_at: list[float] = []  # when each client connection got its hello
        self.envelopes: dict[str, Envelope] = {}
        self._server = serve(self._handle, "127.0.0.1", 0, compression=None, ping_interval=None)
        self._server_thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._backend_port = self._server.socket.getsockname()[1]
        self._links: list[_Link] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self._accept_thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeSocketMode:
        self._server_thread.start()
        self.up()
        return self

    def stop(self) -> None:
        self._stopped = True
        self.down()
        self._server.shutdown()

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """What ``apps.connections.open`` should answer."""
        return f"ws://127.0.0.1:{self.port}/link/?ticket=fake-ticket&app_id=A0TRBOT"

    # -- breaking the link -----------------------------------------------------------------
    def up(self) -> None:
        """Accept connections (again, on the same port)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accept_thread.start()

    def down(self) -> None:
        """Refuse new connections and reset the current ones (no close frame)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            except OSError:
                pass
            listener.close()
            if self._accept_thread is not None:
                self._accept_thread.join(2)
        self.drop()

    def drop(self) -> None:
        """Reset every client's TCP connection without a WebSocket close frame."""
        with self._cond:
            links, self._links = self._links, []
        for link in links:
            _reset(link.client)
            _reset(link.upstream)

    def blackhole(self) -> None:
        """Stop passing data on the current connections, but keep them open (a half-open link)."""
        with self._cond:
            for link in self._links:
                link.holes.set()

    def refresh(self) -> None:
        """Ask the client to reconnect, as Slack does (``disconnect``, ``refresh_requested``)."""
        self._send_current(
            {"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "fake"}}
        )

    # -- envelopes -------------------------------------------------------------------------
    def send(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0) -> str:
        """Send an envelope on the newest connection; returns its envelope_id."""
        envelope_id = f"env-{next(_ids):06d}"
        message = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": kind,
            "accepts_response_payload": kind != "events_api",
        }
        if kind == "events_api":
            message |= {"retry_attempt": retry_attempt, "retry_reason": "timeout" if retry_attempt else ""}
        with self._cond:
            connection = len(self._connections)
            self.envelopes[envelope_id] = Envelope(
                envelope_id, kind, time.perf_counter(), connection=connection
            )
        self._send_current(message)
        return envelope_id

    def send_event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_attempt: int = 0
    ) -> str:
        return self.send("events_api", event_envelope(event, event_id), retry_attempt=retry_attempt)

    def send_command(self, form: dict[str, Any]) -> str:
        return self.send("slash_commands", form)

    def send_interaction(self, payload: dict[str, Any]) -> str:
        return self.send("interactive", payload)

    # -- waiting ---------------------------------------------------------------------------
    def wait_connected(self, count: int = 1, timeout: float = 10.0) -> float:
        """Wait until ``count`` connections have had their hello; returns when the last one did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.connected_at) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} connection(s) within {timeout}s")
                self._cond.wait(left)
            return self.connected_at[count - 1]

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> Envelope:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.envelopes[envelope_id].acked_at is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no ack for {envelope_id} within {timeout}s")
                self._cond.wait(left)
            return self.envelopes[envelope_id]

    @property
    def connections(self) -> int:
        with self._cond:
            return len(self.connected_at)

    # -- internals -------------------------------------------------------------------------
    def _handle(self, connection: ServerConnection) -> None:
        connection.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "fake-socket-mode", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": "A0TRBOT"},
                }
            )
        )
        with self._cond:
            self._connections.append(connection)
            self.connected_at.append(time.perf_counter())
            self._cond.notify_all()
        try:
            for raw in connection:
                try:
                    message = json.loads(raw)
                except (TypeError, ValueError):
                    continue
                envelope_id = message.get("envelope_id")
                with self._cond:
                    envelope = self.envelopes.get(envelope_id)
                    if envelope is not None and envelope.acked_at is None:
                        envelope.acked_at = time.perf_counter()
                        envelope.ack = message
                        self._cond.notify_all()
        except Exception:  # the link was dropped
            pass

    def _send_current(self, message: dict[str, Any]) -> None:
        with self._cond:
            if not self._connections:
                raise AssertionError("no client is connected")
            connection = self._connections[-1]
        connection.send(json.dumps(message))

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._listener is not listener:  # went down meanwhile
                _reset(client)
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._backend_port))
            except OSError:  # the server is stopping
                _reset(client)
                return
            link = _Link(client, upstream)
            with self._cond:
                self._links.append(link)
            threading.Thread(target=self._relay, args=(link,), daemon=True).start()

    def _relay(self, link: _Link) -> None:
        sockets = [link.client, link.upstream]
        try:
            while True:
                if link.holes.is_set():  # read nothing, pass nothing: the peers see silence
                    time.sleep(0.2)
                    continue
                readable, _, _ = select.select(sockets, [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (link.upstream if sock is link.client else link.client).sendall(data)
        except (OSError, ValueError):
            for sock in sockets:
                _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): the peer sees the link drop, with no close frame."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
