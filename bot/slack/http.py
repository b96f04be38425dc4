"""The HTTP transport: Slack's requests at ``/slack/events``, served by waitress behind our own checks.

Why waitress (measured in ``scripts/bench_slack.py`` against the old ``wsgiref`` server): it reads
requests in one asynchronous loop and hands only complete requests to a fixed pool of threads,
so idle or slow clients hold a connection, never a thread; it has a real listen backlog, a cap on
the body (checked against Content-Length before reading, and while reading a chunked body), and
an idle timeout. We add a total read deadline (a client trickling bytes is cut off) and verify
Slack's signature ourselves before bolt sees the request, so an unsigned, forged or stale request
never reaches a library that might log its body. Refused requests are logged with their size and
the reason only.

``install_log_redaction`` keeps request bodies, payloads and response URLs out of the log whatever
slack_bolt or slack_sdk write, at any level.
"""

from __future__ import annotations

import errno
import hmac
import io
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from bot.config import SlackSettings

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/health"
# Slack refuses requests whose timestamp is more than five minutes off; so do we.
MAX_CLOCK_SKEW_SECONDS = 5 * 60


class HttpServerError(Exception):
    """The HTTP transport cannot start (address in use, unknown host...); the message says which."""


# -- the WSGI application ----------------------------------------------------------------------


def make_wsgi_app(
    app: App,
    signing_secret: str,
    max_body_bytes: int,
    *,
    clock: Callable[[], float] = time.time,
) -> Callable[[dict, Callable], Iterable[bytes]]:
    """Slack's requests at ``/slack/events`` (size-capped, signature-checked) to bolt; ``GET /health``.

    Args:
        app: The bolt app.
        signing_secret: The app's signing secret (``SLACK_SIGNING_SECRET``).
        max_body_bytes: Larger requests are refused with 413 before their body is read.
        clock: The time source for the timestamp check (tests).
    """
    bolt = SlackRequestHandler(app, path=EVENTS_PATH)
    verifier = SignatureVerifier(signing_secret)

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == HEALTH_PATH and method == "GET":
            return _reply(start_response, "200 OK", b"ok")
        if path != EVENTS_PATH:
            return _reply(start_response, "404 Not Found", b"not found")
        if method != "POST":
            return _reply(start_response, "405 Method Not Allowed", b"POST only")
        body, refusal = _read_body(environ, max_body_bytes)
        if refusal is None:
            refusal = _signature_problem(verifier, environ, body, clock())
        if refusal is not None:
            status, reason = refusal
            logger.info("refused a request to %s: %s (%d bytes)", EVENTS_PATH, reason, _announced(environ))
            return _reply(start_response, status, reason.encode())
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return bolt(environ, start_response)

    return application


def _read_body(environ: dict, limit: int) -> tuple[bytes, tuple[str, str] | None]:
    announced = _announced(environ)
    if announced > limit:
        return b"", ("413 Content Too Large", f"body over the {limit}-byte limit")
    stream = environ.get("wsgi.input")
    body = stream.read(announced if announced >= 0 else limit + 1) if stream else b""
    if len(body) > limit:  # no Content-Length (a chunked body): read at most one byte past the cap
        return b"", ("413 Content Too Large", f"body over the {limit}-byte limit")
    return body, None


def _announced(environ: dict) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        return -1


def _signature_problem(
    verifier: SignatureVerifier, environ: dict, body: bytes, now: float
) -> tuple[str, str] | None:
    stamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
    signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
    if not stamp.isdigit() or not signature:
        return "401 Unauthorized", "not signed by Slack (no timestamp or signature)"
    if abs(now - int(stamp)) > MAX_CLOCK_SKEW_SECONDS:
        return "401 Unauthorized", "timestamp more than 5 minutes off (a replay, or a wrong clock)"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "400 Bad Request", "body is not UTF-8"
    expected = verifier.generate_signature(timestamp=stamp, body=text) or ""
    if not _same(expected, signature):
        return "401 Unauthorized", "signature does not match (check SLACK_SIGNING_SECRET)"
    return None


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def _reply(start_response: Callable, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


# -- the server --------------------------------------------------------------------------------


def bind_listener(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port``, bound now (before the slow model load).

    Raises:
        HttpServerError: one line naming the problem (port in use, unknown host, no permission).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise HttpServerError(
            f"cannot listen on slack.http_host {host!r}: not an address or a known host name ({exc})"
        ) from exc
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise HttpServerError(_bind_problem(host, port, exc)) from exc
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (another trbot serve?); "
            "choose another with --port or slack.http_port"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {host} is not an address of this machine (check slack.http_host)"
    return f"cannot listen on {where}: {exc.strerror or exc}"


class _Channel(HTTPChannel):
    """A waitress connection that remembers when its current request began to arrive."""

    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.monotonic()
        return super().received(data)


class _RefusalTask(ErrorTask):
    """waitress's error response (e.g. 413 over the body cap), logged with the size and reason only."""

    def execute(self) -> None:
        error = self.request.error
        logger.info(
            "refused a request: %s, %s (%d bytes announced)",
            getattr(error, "reason", type(error).__name__),
            getattr(error, "body", ""),
            self.request.content_length,
        )
        super().execute()


_Channel.error_task_class = _RefusalTask


class _Server(TcpWSGIServer):
    channel_class = _Channel
    read_timeout = 10.0

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections
        cutoff = time.monotonic() - self.read_timeout
        for channel in list(self.active_channels.values()):
            if channel.request is not None and channel.request_started < cutoff and not channel.requests:
                logger.info("closed a connection that took over %.0fs to send its request", self.read_timeout)
                channel.will_close = True


class HttpServer:
    """waitress serving a WSGI app on an already-bound socket; stop it from another thread.

    The interface of ``socketserver`` (``serve_forever``, ``shutdown``, ``server_close``,
    ``server_port``) so tests and ``trbot serve`` drive it the same way.
    """

    def __init__(self, application: Callable, sock: socket.socket, settings: SlackSettings) -> None:
        adjustments = Adjustments(
            threads=settings.http_threads,
            backlog=settings.http_backlog,
            connection_limit=settings.http_max_connections,
            channel_timeout=settings.http_idle_timeout,
            cleanup_interval=max(min(settings.http_idle_timeout, settings.http_read_timeout) / 2, 0.5),
            max_request_body_size=settings.http_max_body_bytes,
            max_request_header_size=64 * 1024,
            expose_tracebacks=False,
            asyncore_use_poll=True,  # select() stops at 1,024 descriptors
            ident="trbot",
        )
        self._map: dict = {}
        self._dispatcher = ThreadedTaskDispatcher()
        self._dispatcher.set_thread_count(settings.http_threads)
        self._server = _Server(
            application,
            self._map,
            _sock=sock,
            dispatcher=self._dispatcher,
            adj=adjustments,
            sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()),
            bind_socket=False,
        )
        self._server.read_timeout = settings.http_read_timeout
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()  # not serving yet
        self._closed = False

    @property
    def server_address(self) -> tuple[str, int]:
        return self._server.socket.getsockname()[:2]

    @property
    def server_port(self) -> int:
        return self.server_address[1]

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        from waitress import wasyncore

        self._stopped.clear()
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=poll_interval, map=self._map, use_poll=True, count=1)
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` (from another thread) and wait until it has returned."""
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self._server.pull_trigger()  # wake the loop
        except OSError:  # already closed
            return
        self._stopped.wait(5)

    def server_close(self) -> None:
        """Close every connection and the listening socket; let running requests finish (5 s at most)."""
        from waitress import wasyncore

        if self._closed:
            return
        self._closed = True
        self._dispatcher.shutdown(cancel_pending=False, timeout=5)
        wasyncore.close_all(self._map)


def make_http_server(
    app: App,
    host: str,
    port: int,
    *,
    settings: SlackSettings | None = None,
    signing_secret: str | None = None,
    sock: socket.socket | None = None,
) -> HttpServer:
    """The production HTTP server for ``app``: Slack requests at ``/slack/events``, ``GET /health``.

    Args:
        app: The bolt app.
        host, port: Where to listen (ignored when ``sock`` is given).
        settings: ``config.slack`` (threads, backlog, timeouts, body cap); defaults if None.
        signing_secret: Defaults to the one the bolt app was built with.
        sock: An already-bound listening socket (``bind_listener``), so that start-up problems
            are found before the slow model load.
    """
    install_log_redaction()
    settings = settings or SlackSettings()
    secret = signing_secret if signing_secret is not None else getattr(app, "_signing_secret", "")
    if sock is None:
        sock = bind_listener(host, port, settings.http_backlog)
    application = make_wsgi_app(app, secret or "", settings.http_max_body_bytes)
    return HttpServer(application, sock, settings)


# -- response URLs -----------------------------------------------------------------------------

# Where Slack's response URLs point: its commercial and GovSlack hosts.
SLACK_RESPONSE_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})


def is_slack_response_url(url: str, api_url: str) -> bool:
    """True for an https URL on Slack's response-URL hosts, or on the host of ``api_url``.

    ``slack.api_url``'s host is accepted too (with its scheme), for a GovSlack or test Web API.
    """
    try:
        parts, api = urlsplit(str(url)), urlsplit(api_url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return False
    if parts.username or parts.password or not host:
        return False
    if parts.scheme == "https" and host in SLACK_RESPONSE_HOSTS and port in (None, 443):
        return True
    return parts.scheme == api.scheme and host == api.hostname and port == api.port


# -- keeping payloads out of the log -----------------------------------------------------------

# Loggers of the Slack libraries (bolt names its app logger after the app: "trbot", "trbot:<listener>").
_LIBRARY_LOGGER = re.compile(r"(slack_bolt|slack_sdk|trbot)([.:]|$)")
# Where a library message starts to carry data: a body, a payload, a URL, a dict or list.
_PAYLOAD_MARKER = re.compile(
    r"body|payload|message:|data:|url|://|\btext\b|[{\[]|token|signature", re.IGNORECASE
)
MAX_LIBRARY_MESSAGE_CHARS = 200
_installed = False
_install_lock = threading.Lock()


def redact_library_message(message: str) -> str:
    """A Slack library's log message cut where it starts to carry a payload, a body or a URL."""
    found = _PAYLOAD_MARKER.search(message)
    if found:
        message = message[: found.start()].rstrip(" :(-,") + " … [payload redacted]"
    if len(message) > MAX_LIBRARY_MESSAGE_CHARS:
        message = message[:MAX_LIBRARY_MESSAGE_CHARS] + "… [redacted]"
    return message


def install_log_redaction() -> None:
    """Redact every record the Slack libraries create, at any level, before any handler sees it.

    A log-record factory rather than a filter: logger filters apply only to records created on
    that very logger, and the libraries create loggers of their own as they go.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(name: str, level: int, fn: str, lno: int, msg: Any, args: Any, *rest: Any, **kw: Any):
            if _LIBRARY_LOGGER.match(name or ""):
                try:
                    text = str(msg) % args if args else str(msg)
                except (TypeError, ValueError):
                    text = str(msg)
                msg, args = redact_library_message(text), ()
            return previous(name, level, fn, lno, msg, args, *rest, **kw)

        logging.setLogRecordFactory(factory)
        _installed = True
