"""The HTTP transport over real sockets: the body cap, slow clients, signatures, a log without payloads."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from bot.slack import http
from bot.slack.http import HttpServerError, bind_listener, is_slack_response_url, redact_library_message
from tests.slack_harness import (
    AppServer,
    FakeAnswerer,
    command_form,
    dm_event,
    envelope,
    make_answer,
    make_config,
    mention_event,
    post,
    signed_headers,
)

MARKER = "zebracorn-ultramarine-question"


@pytest.fixture
def make_server(fake, tmp_path):
    servers: list[AppServer] = []

    def start(answerer=None, **slack) -> AppServer:
        server = AppServer(make_config(fake.api_url, tmp_path, **slack), answerer or FakeAnswerer(), fake)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _connect(server: AppServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.server.server_port), timeout=10)


def _request_head(length: int | None = None, chunked: bool = False) -> bytes:
    lines = ["POST /slack/events HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_all(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Read until the server closes the connection; returns what came and how long it took."""
    sock.settimeout(timeout)
    started, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data, time.monotonic() - started


# -- the body cap ------------------------------------------------------------------------------


def test_a_body_announced_over_the_cap_is_refused_before_it_is_read(make_server, caplog):
    server = make_server(http_max_body_bytes=4096)
    with caplog.at_level(logging.DEBUG), _connect(server) as sock:
        sock.sendall(_request_head(1_000_000_000) + b'{"q": "' + MARKER.encode())
        reply, seconds = _read_all(sock, timeout=5)
    assert reply.startswith(b"HTTP/1.1 413") and seconds < 2
    assert MARKER not in caplog.text
    assert any(
        "refused a request" in r.getMessage() and "1000000000" in r.getMessage() for r in caplog.records
    )


def test_a_chunked_body_over_the_cap_is_refused_while_it_is_read(make_server):
    server = make_server(http_max_body_bytes=4096)
    chunks = b"".join(b"800\r\n" + b"x" * 0x800 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    with _connect(server) as sock:
        # In one write: bytes still arriving after the server has refused and closed would make
        # the kernel reset the connection, and a reset can discard the 413 before it is read.
        sock.sendall(_request_head(chunked=True) + chunks)
        reply, _ = _read_all(sock, timeout=5)
    assert reply.startswith(b"HTTP/1.1 413")


def test_a_body_under_the_cap_still_needs_a_signature(make_server, fake):
    server = make_server(http_max_body_bytes=4096)
    body = json.dumps(envelope(dm_event("q")))
    headers = signed_headers(body, "application/json")
    assert post(server.url, body, headers).status == 200
    assert post(server.url, body, headers | {"X-Slack-Signature": "v0=" + "0" * 64}).status == 401
    big = json.dumps(envelope(dm_event("q" * 5000)))
    assert post(server.url, big, signed_headers(big, "application/json")).status == 413


# -- slow and idle clients ---------------------------------------------------------------------


def test_a_client_that_announces_a_body_and_stalls_is_cut_off(make_server):
    server = make_server(http_idle_timeout=1.0, http_read_timeout=1.0)
    with _connect(server) as sock:
        sock.sendall(_request_head(3000) + b"0123456789")
        _, seconds = _read_all(sock, timeout=10)
    assert seconds < 4  # closed by the server, not by our 10 s timeout


def test_a_client_trickling_bytes_is_cut_off_by_the_read_deadline(make_server):
    server = make_server(http_idle_timeout=5.0, http_read_timeout=1.0)
    sock = _connect(server)
    started, closed = time.monotonic(), False
    sock.sendall(_request_head(3000))
    try:
        for _ in range(40):  # one byte every 0.2 s never trips the 5 s idle timeout
            time.sleep(0.2)
            sock.sendall(b"x")
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    finally:
        sock.close()
    assert closed and time.monotonic() - started < 5


def test_idle_connections_do_not_take_threads(make_server):
    server = make_server(http_threads=4)
    before = threading.active_count()
    sockets = [_connect(server) for _ in range(100)]
    try:
        time.sleep(0.3)
        assert threading.active_count() - before <= 2
        urllib.request.urlopen(server.url.replace("/slack/events", "/health"), timeout=5).read()
    finally:
        for sock in sockets:
            sock.close()


# -- routes --------------------------------------------------------------------------------------


def test_health_other_paths_and_methods(make_server):
    server = make_server()
    base = server.url.removesuffix("/slack/events")
    assert urllib.request.urlopen(f"{base}/health", timeout=5).read() == b"ok"
    with pytest.raises(urllib.error.HTTPError) as get_events:
        urllib.request.urlopen(server.url, timeout=5)
    assert get_events.value.code == 405


# -- nothing from a request reaches the log ---------------------------------------------------


def test_no_question_text_reaches_any_log_whatever_the_request(make_server, fake, caplog):
    def echo(question, context):
        answer = make_answer(question)
        return answer.__class__(**{**answer.__dict__, "message": f"About {question}"})

    server = make_server(FakeAnswerer(echo))
    for name in ("slack_bolt", "slack_sdk", "trbot", "waitress"):
        logging.getLogger(name).setLevel(logging.DEBUG)  # the libraries' most talkative setting
    question = f"Do I need a licence for {MARKER}?"
    with caplog.at_level(logging.DEBUG):
        unsigned = json.dumps(envelope(dm_event(question)))
        assert post(server.url, unsigned, {"Content-Type": "application/json"}).status == 401
        assert server.post_json(envelope(dm_event(question)), secret="rotated-secret").status == 401
        stale = int(time.time()) - 3600
        assert server.post_json(envelope(dm_event(question)), timestamp=stale).status == 401
        future = int(time.time()) + 3600
        assert server.post_json(envelope(mention_event(question)), timestamp=future).status == 401
        assert server.post_event(mention_event(question)).status == 200  # signed: answered
        assert server.post_form(command_form(question, fake.response_url("cmd"))).status == 200
        fake.wait_for("chat.postMessage")
        fake.wait_for("response_url")
        server.settle()
    for name in ("slack_bolt", "slack_sdk", "trbot", "waitress"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert MARKER not in text and "/response/cmd" not in text
    reasons = [r.getMessage() for r in caplog.records if r.name == "bot.slack.http"]
    assert len(reasons) == 4 and all("refused a request" in reason for reason in reasons)
    assert any("signature does not match" in reason for reason in reasons)
    assert sum("timestamp more than 5 minutes off" in reason for reason in reasons) == 2


def test_the_slack_libraries_records_are_redacted_at_creation(caplog):
    http.install_log_redaction()
    verification = logging.getLogger("slack_bolt.RequestVerification")
    verification.setLevel(logging.DEBUG)  # bolt copies the root level when it makes the logger
    with caplog.at_level(logging.DEBUG):
        # what slack_bolt logs for a request whose signature fails, and slack_sdk at DEBUG
        verification.info(
            "Invalid request signature detected (signature: v0=1, timestamp: 1, body: %s)", f"text={MARKER}"
        )
        logging.getLogger("slack_sdk.webhook.client").debug(
            "Sending a request - url: https://hooks.slack.com/commands/T1/2/secret, body: {'text': '%s'}",
            MARKER,
        )
        logging.getLogger("slack_sdk.webhook.client").info(
            "Going to retry the same request: POST https://hooks.slack.com/commands/T1/2/secret"
        )
        logging.getLogger("bot.slack.answers").info("ours are left alone: %s", "kept")
    assert MARKER not in caplog.text and "hooks.slack.com" not in caplog.text
    verification.setLevel(logging.NOTSET)
    assert (
        "Invalid request … [payload redacted]" in caplog.text and "ours are left alone: kept" in caplog.text
    )


def test_redact_library_message():
    assert redact_library_message('Responding with status: 200 body: "hi" (3 millis)') == (
        "Responding with status: 200 … [payload redacted]"
    )
    assert redact_library_message("A retry handler found: RateLimit") == "A retry handler found: RateLimit"
    assert len(redact_library_message("x" * 5000)) < 220


# -- start-up problems, before the slow load ---------------------------------------------------


def test_a_port_in_use_is_one_line_naming_it():
    taken = bind_listener("127.0.0.1", 0, 5)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(HttpServerError) as error:
            bind_listener("127.0.0.1", port, 5)
    finally:
        taken.close()
    message = str(error.value)
    assert f"127.0.0.1:{port}" in message and "already in use" in message and "\n" not in message


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("no-such-host.invalid", "not an address or a known host name"),
        ("192.0.2.1", "not an address of this"),
    ],
)
def test_an_unusable_host_is_one_line_naming_it(host, expected):
    with pytest.raises(HttpServerError, match=expected) as error:
        bind_listener(host, 0, 5)
    assert host in str(error.value) and "\n" not in str(error.value)


# -- response URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.slack.com/commands/T1/2/abc", True),
        ("https://hooks.slack-gov.com/actions/T1/2/abc", True),
        ("http://hooks.slack.com/commands/T1/2/abc", False),
        ("https://hooks.slack.com.evil.example/commands/x", False),
        ("https://evil.example/hooks.slack.com/x", False),
        ("https://user:pw@hooks.slack.com/commands/x", False),
        ("https://hooks.slack.com:8443/commands/x", False),
        ("http://127.0.0.1:8000/response/x", True),  # the configured api_url's host (tests, GovSlack)
        ("http://127.0.0.1:8001/response/x", False),
        ("file:///etc/passwd", False),
        ("not a url", False),
    ],
)
def test_response_urls_must_be_on_slack_hosts(url, ok):
    assert is_slack_response_url(url, "http://127.0.0.1:8000/api/") is ok


def test_a_slash_command_with_a_foreign_response_url_never_posts_there(make_server, fake, caplog):
    server = make_server()
    form = command_form("Do I need a licence?", "https://attacker.example/collect?x=1")
    with caplog.at_level(logging.DEBUG):
        assert server.post_form(form).status == 200
        reply = fake.wait_for("chat.postEphemeral")[0].body  # privately, in the channel, instead
        server.settle()
    assert reply["user"] == form["user_id"] and fake.calls_to("response_url") == []
    assert "attacker.example" not in caplog.text
    assert "ignored a response_url that is not on a Slack host" in caplog.text
