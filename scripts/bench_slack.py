"""Benchmark the Slack layer (not a test): signed events over HTTP against the fake Slack API.

Sends N signed events (half @mentions, half DMs, each with a fresh event id) to the Bolt app
served over real HTTP, as Slack would, and reports percentiles of
  (a) POST -> HTTP response (Slack's 3-second ack; target p99 <= 200 ms), and
  (b) POST -> the reply reaching the fake Slack API (target p95 <= 1 s).
Warm-up events are sent first and not counted.

    .venv/bin/python scripts/bench_slack.py                # fast fake answerer
    .venv/bin/python scripts/bench_slack.py --real         # the real index and model (app.yml)
    .venv/bin/python scripts/bench_slack.py --events 500 --interval 0   # a burst
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


def _percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]


if __name__ == "__main__":
    sys.exit(main())
