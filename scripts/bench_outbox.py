"""Benchmark the outbox (not a test): 200 messages queued while the fake Slack API answers 503.

The messages are what the bot sends: 150 answers (each queued twice with the same dedupe key, as a
retried Slack event would), 20 case cards, 20 card updates that refer to their card's ts
(``$delivered``), and 10 slash-command replies through a response_url. The worker delivers with the
shipped backoff settings while the fake Web API answers 503; halfway through the outage the bot
restarts (the worker stops, and a new Outbox and worker open the same database, as ``trbot serve``
does at start-up). When Slack recovers, the script reports how many messages arrived at the fake,
how many arrived twice (counted at the fake by text), and the time to drain.

Baseline, in the same run: the same messages sent directly, as trbot did before the outbox, with
slack_sdk's retry handlers (3 retries with backoff), during an outage of the same length.

    .venv/bin/python scripts/bench_outbox.py                  # a 6 s outage
    .venv/bin/python scripts/bench_outbox.py --outage 15 --crash
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slack_sdk import WebClient  # noqa: E402
from slack_sdk.webhook import WebhookClient  # noqa: E402

from bot.config import OutboxSettings  # noqa: E402
from bot.outbox import Outbox  # noqa: E402
from bot.slack.app import build_retry_handlers  # noqa: E402
from bot.slack.delivery import OutboxWorker  # noqa: E402
from tests.fake_slack import FakeSlack  # noqa: E402

ANSWERS, CARDS, REPLIES = 150, 20, 10


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.CRITICAL)
    settings = OutboxSettings(lease_seconds=args.lease)
    with FakeSlack() as fake, tempfile.TemporaryDirectory() as tmp:
        messages = _messages(fake)
        print(
            f"trbot outbox benchmark: {len(messages)} messages ({ANSWERS} answers, each queued twice;"
            f" {CARDS} case cards; {CARDS} card updates referring to them; {REPLIES} response_url replies)"
        )
        print(
            f"backoff {settings.backoff_initial_seconds:g} s doubling to {settings.backoff_max_seconds:g} s,"
            f" jitter {settings.backoff_jitter:g}; Slack answers 503 for {args.outage:g} s;"
            f" the bot restarts at {args.outage / 2:g} s{' after a crash mid-send' if args.crash else ''}"
        )
        _outbox_run(fake, Path(tmp) / "state.db", settings, messages, args)
        fake.clear()
        _baseline(fake, messages, args)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=6.0, help="seconds of 503s (default 6)")
    parser.add_argument(
        "--crash", action="store_true", help="the first worker dies holding 5 claimed messages (lease expiry)"
    )
    parser.add_argument("--lease", type=float, default=30.0, help="outbox.lease_seconds (default 30)")
    return parser.parse_args(argv)


def _messages(fake: FakeSlack) -> list[tuple]:
    """(method, payload, kind, dedupe_key, case_ref, identity at the fake) for each message."""
    out = []
    for n in range(ANSWERS):
        payload = {"channel": f"C0CH{n % 7}", "thread_ts": f"1700000000.{n:06d}", "text": f"answer {n}"}
        out.append(("chat.postMessage", payload, "answer", f"reply:Ev{n:05d}", None, f"answer {n}"))
    for n in range(CARDS):
        ref = f"RS-2026-{n + 1:04d}"
        card = {"channel": "G0TEAM", "text": f"card {ref}"}
        out.append(("chat.postMessage", card, "case_card", f"case-card:{ref}", ref, f"card {ref}"))
    for n in range(CARDS):
        ref = f"RS-2026-{n + 1:04d}"
        update = {
            "channel": "G0TEAM",
            "ts": {"$delivered": f"case-card:{ref}", "field": "ts"},
            "text": f"update {ref}",
        }
        out.append(("chat.update", update, "card_update", f"card-update:{ref}:1", ref, f"update {ref}"))
    for n in range(REPLIES):
        hook = {"url": fake.response_url(f"cmd{n}"), "message": {"text": f"reply {n}"}}
        out.append(("response_url", hook, "answer", f"reply:command:{n}", None, f"reply {n}"))
    return out


def _outbox_run(fake: FakeSlack, path: Path, settings: OutboxSettings, messages: list[tuple], args) -> None:
    client = WebClient(token="xoxb-bench", base_url=fake.api_url, retry_handlers=[], timeout=10)
    fake.outage(503)
    first_box = Outbox(path, settings)
    first = OutboxWorker(first_box, client).start()
    for method, payload, kind, key, ref, _ in messages:
        first_box.enqueue(method, payload, kind=kind, dedupe_key=key, case_ref=ref)
        if kind == "answer" and method == "chat.postMessage":  # Slack's retry of the same event
            first_box.enqueue(method, payload, kind=kind, dedupe_key=key, case_ref=ref)
    started = time.monotonic()
    time.sleep(args.outage / 2)
    first.stop()
    abandoned = 0
    if args.crash:
        first_box.make_due(limit=5)
        abandoned = len(first_box.claim(5))  # claimed, and the process died before sending them
    first_box.close()
    second_box = Outbox(path, settings)  # the restarted bot: same database
    second_box.make_due()
    second = OutboxWorker(second_box, client).start()
    time.sleep(max(0.0, args.outage - (time.monotonic() - started)))
    failed_calls = len(fake.calls)
    fake.recover()
    recovered = time.monotonic()
    while second_box.outstanding() and time.monotonic() - recovered < 600:
        time.sleep(0.01)
    drain = time.monotonic() - recovered
    second.stop()
    counts = second_box.counts()
    attempts = [m.attempts for m in second_box.list(limit=10_000)]
    second_box.close()
    seen = _seen(fake)
    expected = {identity for *_, identity in messages}
    twice = sum(1 for identity, n in seen.items() if n > 1)
    delivered = len(expected & set(seen))
    if abandoned:
        print(
            f"          {abandoned} messages were mid-send when the first sender died; its process lives on"
            " here, so they wait out their lease (a killed process's are taken over at once)"
        )
    print(
        f"outbox:   delivered {delivered}/{len(messages)}, twice {twice}, failed {counts['failed']};"
        f" drained {drain:.1f} s after Slack recovered; {failed_calls} calls answered 503 during the outage;"
        f" attempts per message: max {max(attempts)}, mean {sum(attempts) / len(attempts):.1f}"
    )
    ok = delivered == len(messages) and twice == 0
    print(f"          targets (all delivered, none twice): {'met' if ok else 'MISSED'}")


def _baseline(fake: FakeSlack, messages: list[tuple], args) -> None:
    """The old way: send at once from 32 listener threads, with slack_sdk's 3 retries."""
    handlers = build_retry_handlers(3)
    client = WebClient(token="xoxb-bench", base_url=fake.api_url, retry_handlers=handlers, timeout=10)
    cards: dict[str, str] = {}
    lock = threading.Lock()

    def send(item: tuple) -> bool:
        method, payload, kind, key, ref, _ = item
        try:
            if method == "response_url":
                response = WebhookClient(payload["url"], retry_handlers=handlers).send_dict(
                    payload["message"]
                )
                return response.status_code == 200
            if method == "chat.update":
                with lock:
                    ts = cards.get(key.split(":")[1] + ":" + key.split(":")[2])
                if ts is None:
                    return False  # its card was lost
                client.chat_update(**(payload | {"ts": ts}))
                return True
            response = client.chat_postMessage(**payload)
            if kind == "case_card":
                with lock:
                    cards[ref] = response["ts"]
            return True
        except Exception:
            return False

    fake.outage(503)
    timer = threading.Timer(args.outage, fake.recover)
    timer.start()
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(send, [m for m in messages if m[2] != "card_update"]))
        results += list(pool.map(send, [m for m in messages if m[2] == "card_update"]))
    timer.join()
    print(
        f"baseline: direct sends with slack_sdk's retries (before the outbox): delivered"
        f" {sum(results)}/{len(messages)}, lost {len(results) - sum(results)} for good"
    )


def _seen(fake: FakeSlack) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    for call in fake.calls:
        if not call.ok:
            continue
        if call.method in ("chat.postMessage", "chat.update"):
            seen[call.body.get("text")] += 1
        elif call.method == "response_url":
            seen[call.body.get("text")] += 1
    return seen


if __name__ == "__main__":
    sys.exit(main())
