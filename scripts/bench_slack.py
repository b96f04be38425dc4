"""Benchmark the Slack layer (not a test): signed events over HTTP against the fake Slack API.

Sends N signed events (half @mentions, half DMs, each with a fresh event id) to the Bolt app
served over real HTTP, as Slack would, and reports percentiles of
  (a) POST -> HTTP response (Slack's 3-second ack; target p99 <= 200 ms), and
  (b) POST -> the reply reaching the fake Slack API (target p95 <= 1 s).
Warm-up events are sent first and not counted.

    .venv/bin/python scripts/bench_slack.py                # fast fake answerer
    .venv/bin/python scripts/bench_slack.py --real         # the real index and model (app.yml)
    .venv/bin/python scripts/bench_slack.py --events 500 --interval 0   # a burst
    .venv/bin/python scripts/bench_slack.py --transport    # the HTTP server under attack and bursts

--transport compares the production server (waitress, bot.slack.http) with the old development
server (wsgiref, listen backlog 5) in the same run: 60 simultaneous signed requests (how many were
reset), a client announcing a 1 GB body and sending 10 bytes (how long it holds on), and 300 idle
connections (how many threads they cost).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_slack import FakeSlack  # noqa: E402
from tests.slack_harness import AppServer, FakeAnswerer, dm_event, make_config, mention_event  # noqa: E402

QUESTIONS = (
    "Do I need an export licence to take my laptop to a conference abroad?",
    "What due diligence is needed before partnering with an overseas university?",
    "Who needs an ATAS certificate?",
    "Is there an exemption from export controls for basic scientific research?",
    "Can a visiting researcher access our lab's data?",
    "What are the penalties for exporting without a licence?",
    "Do sanctions apply to collaborations with Russian institutions?",
    "What should I do if a foreign government offers to fund my research?",
)


class TimedAnswerer:
    """Wraps an answerer and records how long each ``answer`` call takes (the core's share of (b))."""

    def __init__(self, answerer) -> None:
        self.answerer = answerer
        self.seconds: list[float] = []

    def answer(self, question: str, context: str | None = None):
        started = time.perf_counter()
        try:
            return self.answerer.answer(question, context=context)
        finally:
            self.seconds.append(time.perf_counter() - started)


@dataclasses.dataclass
class Sample:
    key: tuple[str, str | None]
    sent: float
    responded: float = 0.0
    status: int = 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.transport:
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is N" per request
        return bench_transport()
    with FakeSlack() as fake, tempfile.TemporaryDirectory() as tmp:
        config, core, label = _setup(args.real, fake.api_url, Path(tmp))
        answerer = TimedAnswerer(core)
        server = AppServer(config, answerer, fake)
        try:
            _send(server, args.warmup, args.interval, "warm")
            server.settle(60)
            fake.clear()
            answerer.seconds.clear()
            samples = _send(server, args.events, args.interval, "bench")
            replies = _wait_for_replies(fake, samples, timeout=max(30.0, args.events * 0.5))
        finally:
            server.stop()
    _report(samples, replies, [t * 1000 for t in answerer.seconds], label, args)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help="events to time (default 200, --real 100; at least 100)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed events first (default 20)")
    parser.add_argument(
        "--interval",
        type=float,
        help="seconds between events (default 0.02; --real 0.5, above one real answer on 2 cores)",
    )
    parser.add_argument("--real", action="store_true", help="use the real index and model from app.yml")
    parser.add_argument(
        "--transport", action="store_true", help="burst, slow-loris and idle-connection figures"
    )
    args = parser.parse_args(argv)
    args.events = max(args.events or (100 if args.real else 200), 100)
    if args.interval is None:
        args.interval = 0.5 if args.real else 0.02
    return args


def _setup(real: bool, api_url: str, tmp: Path):
    config = make_config(api_url, tmp)
    if not real:
        return config, FakeAnswerer(), "fake answerer"
    from bot.answer import open_answerer
    from bot.config import load_config

    loaded = load_config()
    started = time.perf_counter()
    answerer = open_answerer(loaded)
    load_seconds = time.perf_counter() - started
    config = dataclasses.replace(loaded, slack=config.slack, paths=config.paths)
    return config, answerer, f"real answerer ({loaded.paths.index_db.name}, loaded in {load_seconds:.1f}s)"


def _send(server: AppServer, count: int, interval: float, tag: str) -> list[Sample]:
    samples = []
    for number in range(count):
        question = QUESTIONS[number % len(QUESTIONS)]
        if number % 2:
            event = dm_event(question, channel=f"D{tag.upper()}{number:06d}")
            key = (event["channel"], None)
        else:
            event = mention_event(question, channel=f"C{tag.upper()}{number % 7}")
            key = (event["channel"], event["ts"])
        sample = Sample(key, time.perf_counter())
        result = server.post_event(event)
        sample.responded, sample.status = sample.sent + result.seconds, result.status
        samples.append(sample)
        if interval:
            time.sleep(interval)
    return samples


def _wait_for_replies(fake: FakeSlack, samples: list[Sample], timeout: float) -> dict[tuple, float]:
    wanted = {sample.key for sample in samples}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = {
            (call.body.get("channel"), call.body.get("thread_ts")): call.at
            for call in fake.calls_to("chat.postMessage")
        }
        if wanted <= set(replies):
            return replies
        threading.Event().wait(0.05)
    return replies


def _report(
    samples: list[Sample],
    replies: dict[tuple, float],
    core: list[float],
    label: str,
    args: argparse.Namespace,
) -> None:
    acks = [(s.responded - s.sent) * 1000 for s in samples]
    answered = [(replies[s.key] - s.sent) * 1000 for s in samples if s.key in replies]
    bad = sum(1 for s in samples if s.status != 200)
    print(f"trbot Slack benchmark: {len(samples)} signed events (mentions and DMs), {label}")
    pace = f"{args.interval * 1000:.0f} ms between events"
    print(f"warm-up {args.warmup} events; {pace}; non-200 responses: {bad}")
    print(f"replies received: {len(answered)}/{len(samples)}")
    print(f"{'':28}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    rows = (
        ("(a) POST -> HTTP response", acks),
        ("(b) POST -> reply at API", answered),
        ("    of which answer()", core),
    )
    for name, values in rows:
        cells = "".join(f"{_percentile(values, p):>7.1f}ms" for p in (50, 95, 99, 100))
        print(f"{name:28}{cells}")
    a_ok = _percentile(acks, 99) <= 200
    b_ok = len(answered) == len(samples) and _percentile(answered, 95) <= 1000
    verdict = {True: "met", False: "MISSED"}
    print(f"targets: (a) p99 <= 200 ms: {verdict[a_ok]}; (b) p95 <= 1 s: {verdict[b_ok]}")


# -- the transport under bursts and slow clients ------------------------------------------------


def bench_transport(burst: int = 60, idle: int = 300) -> int:
    """Figures for both servers, side by side (the old one rebuilt here as it was)."""
    print(f"trbot HTTP transport: {burst} simultaneous signed requests, slow-loris, {idle} idle connections")
    head = f"{'server':<30}{'200s':>6}{'reset/refused':>15}{'p50':>9}{'max':>9}"
    print(f"{head}{'1 GB announce':>16}{'+threads':>10}")
    with FakeSlack() as fake, tempfile.TemporaryDirectory() as tmp:
        for name, swap in (("wsgiref dev server (before)", _old_server), ("waitress (bot.slack.http)", None)):
            config = make_config(fake.api_url, Path(tmp) / name[:4])
            server = AppServer(config, FakeAnswerer(), fake)
            if swap is not None:
                server.server.shutdown()
                server.server.server_close()
                server.server = swap(server.app)
                server.thread = threading.Thread(
                    target=server.server.serve_forever, args=(0.05,), daemon=True
                )
                server.thread.start()
            try:
                ok, failed, times = _burst(server, burst)
                held = _slow_loris(server)
                extra = _idle_threads(server, idle)
            finally:
                server.stop()
            cells = f"{ok:>6}{failed:>15}{_percentile(times, 50):>7.0f}ms{max(times or [0]):>7.0f}ms"
            print(f"{name:<30}{cells}{held:>16}{extra:>10}")
    return 0


def _old_server(app):
    """The development server trbot used before: wsgiref, a thread per connection, backlog 5, no timeouts."""
    import socketserver
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from slack_bolt.adapter.wsgi import SlackRequestHandler

    class Threading(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

        def handle_error(self, request, client_address):  # a reset client: quiet, we count it
            pass

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    return make_server("127.0.0.1", 0, SlackRequestHandler(app), server_class=Threading, handler_class=Quiet)


def _burst(server: AppServer, count: int) -> tuple[int, int, list[float]]:
    import json
    import socket

    from tests.slack_harness import envelope, signed_headers

    port = server.server.server_port
    barrier = threading.Barrier(count)
    results: list[tuple[bool, float]] = []
    lock = threading.Lock()

    def one(number: int) -> None:
        body = json.dumps(
            envelope(dm_event(QUESTIONS[number % len(QUESTIONS)], channel=f"DBURST{number:04d}"))
        )
        headers = signed_headers(body, "application/json") | {"Content-Length": str(len(body)), "Host": "x"}
        raw = "POST /slack/events HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        raw += "Connection: close\r\n\r\n" + body
        barrier.wait()
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(raw.encode())
                reply = sock.recv(64)
            ok = reply.startswith(b"HTTP/1.1 200") or reply.startswith(b"HTTP/1.0 200")
        except OSError:
            ok = False
        with lock:
            results.append((ok, (time.perf_counter() - started) * 1000))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    server.settle(30)
    ok = sum(1 for good, _ in results if good)
    return ok, len(results) - ok, [ms for good, ms in results if good]


def _slow_loris(server: AppServer, wait: float = 15.0) -> str:
    """How long a client announcing a 1 GB body and sending 10 bytes keeps its connection."""
    import socket

    head = "POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    sock = socket.create_connection(("127.0.0.1", server.server.server_port), timeout=wait)
    started = time.monotonic()
    try:
        sock.sendall(f"{head}Content-Length: 1000000000\r\n\r\n0123456789".encode())
        reply = sock.recv(64)
        while sock.recv(65536):
            pass
        status = reply.split(b" ")[1].decode() if reply else "closed"
        return f"{status} in {time.monotonic() - started:.2f}s"
    except TimeoutError:
        return f"held >{wait:.0f}s"
    finally:
        sock.close()


def _idle_threads(server: AppServer, count: int) -> int:
    """Threads added while ``count`` connections sit idle."""
    import socket

    before = threading.active_count()
    sockets = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection(("127.0.0.1", server.server.server_port), timeout=5))
        time.sleep(0.5)
        return threading.active_count() - before
    finally:
        for sock in sockets:
            sock.close()


def _percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]


if __name__ == "__main__":
    sys.exit(main())
