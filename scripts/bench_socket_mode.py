"""Benchmark Socket Mode and acks under load (not a test): a local Socket Mode server, a fake Web API.

The bot runs as `trbot serve` runs it (start_serving, run_socket_mode) against
tests/fake_socket_mode.py, with apps.connections.open answering its ws:// URL. Reports:

  (1) reconnect after the TCP link is reset without a close frame (target < 10 s), and the CPU
      time used during a 3-second outage (a busy loop would use ~3 s; target: near 0);
  (2) reconnect after a half-open link (nothing passes, nothing is closed), found by ping timeout;
  (3) a refresh_requested disconnect: reconnect time and the acks of envelopes sent just after it
      (target: every ack within Slack's 3 s);
  (4) acks under load: 120 queued @mentions, then a slash command and a button click, over Socket
      Mode and over HTTP: time to ack each (target < 3 s, aim < 100 ms) and time to drain;
  (5) a revoked app-level token: the one line `trbot serve` prints.

    .venv/bin/python scripts/bench_socket_mode.py
    .venv/bin/python scripts/bench_socket_mode.py --baseline     # also slack_sdk's built-in client
    .venv/bin/python scripts/bench_socket_mode.py --real         # the real index and model (app.yml)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import OutboxSettings  # noqa: E402
from bot.slack import answers_render as render  # noqa: E402
from bot.slack.app import app_deps, create_app  # noqa: E402
from bot.slack.serve import SlackConfigError, check_app_token  # noqa: E402
from bot.state import StateStore  # noqa: E402
from tests.fake_slack import FakeSlack  # noqa: E402
from tests.fake_socket_mode import FakeSocketMode  # noqa: E402
from tests.slack_harness import (  # noqa: E402
    AppServer,
    FakeAnswerer,
    SocketBot,
    block_actions,
    command_form,
    make_answer,
    make_config,
    mention_event,
)

APP_TOKEN = "xapp-1-A0TRBOT-1-bench"
QUESTION = "Do I need an export licence to send controlled software to a collaborator abroad?"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.CRITICAL)
    with FakeSlack() as api, FakeSocketMode() as ws, tempfile.TemporaryDirectory() as tmp:
        api.socket_mode_url = ws.url
        answerer, label = _answerer(args)
        config = _config(api, Path(tmp), args)
        print(f"trbot Socket Mode benchmark ({label}; {args.trials} trials each)")
        bot = SocketBot(config, answerer, APP_TOKEN)
        try:
            ws.wait_connected(1, timeout=20)
            _reconnects(ws, args.trials)
            _half_open(ws, args.trials)
            _refresh(ws, api, args.trials)
            _acks_under_load(ws, api, bot, "Socket Mode", args)
        finally:
            bot.stop()
        _http_acks_under_load(api, Path(tmp) / "http", answerer, args)
        _rejected_token(api, config)
        if args.baseline:
            _baseline(api, ws, Path(tmp) / "baseline", answerer, args)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="trials of each link failure (default 3)")
    parser.add_argument(
        "--mentions", type=int, default=120, help="queued mentions for the ack test (default 120)"
    )
    parser.add_argument("--answer-ms", type=float, default=50.0, help="fake answer time (default 50 ms)")
    parser.add_argument("--real", action="store_true", help="the real index and model from app.yml")
    parser.add_argument("--baseline", action="store_true", help="also measure slack_sdk's built-in client")
    parser.add_argument(
        "--cap", type=float, default=20.0, help="longest wait for the baseline (default 20 s)"
    )
    return parser.parse_args(argv)


def _answerer(args: argparse.Namespace):
    if args.real:
        from bot.answer import open_answerer
        from bot.config import load_config

        started = time.perf_counter()
        answerer = open_answerer(load_config())
        answerer.answer(QUESTION)
        return answerer, f"real answerer, loaded in {time.perf_counter() - started:.1f} s"

    def slow(question, context):
        time.sleep(args.answer_ms / 1000)
        return make_answer(question)

    return FakeAnswerer(slow), f"fake answerer, {args.answer_ms:.0f} ms per answer"


def _config(api: FakeSlack, tmp: Path, args: argparse.Namespace):
    tmp.mkdir(parents=True, exist_ok=True)
    config = make_config(api.api_url, tmp)
    return dataclasses.replace(config, outbox=OutboxSettings(stop_drain_seconds=5.0))


# -- the link ----------------------------------------------------------------------------------


def _reconnects(ws: FakeSocketMode, trials: int) -> None:
    drops, outages, cpus = [], [], []
    for _ in range(trials):
        before = ws.connections
        started = time.perf_counter()
        ws.drop()
        drops.append(ws.wait_connected(before + 1, timeout=30) - started)
        time.sleep(0.5)
        before = ws.connections
        cpu = time.process_time()
        started = time.perf_counter()
        ws.down()
        time.sleep(3.0)
        cpus.append(time.process_time() - cpu)
        ws.up()
        outages.append(ws.wait_connected(before + 1, timeout=30) - started - 3.0)
        time.sleep(0.5)
    print(f"(1) TCP reset, no close frame: reconnected in {_stats(drops)} (target < 10 s)")
    print(
        f"    3 s outage: reconnected {_stats(outages)} after the server was back;"
        f" CPU during it {_stats(cpus)}"
    )


def _half_open(ws: FakeSocketMode, trials: int) -> None:
    times = []
    for _ in range(trials):
        before = ws.connections
        started = time.perf_counter()
        ws.blackhole()
        times.append(ws.wait_connected(before + 1, timeout=60) - started)
        time.sleep(0.5)
    print(f"(2) half-open link (silence): reconnected in {_stats(times)} (target < 10 s; ping timeout)")


def _refresh(ws: FakeSocketMode, api: FakeSlack, trials: int) -> None:
    reconnects, acks = [], []
    for trial in range(trials):
        before = ws.connections
        started = time.perf_counter()
        ws.refresh()
        sent = [ws.send_event(mention_event(f"right after refresh {trial}.{n}")) for n in range(10)]
        reconnects.append(ws.wait_connected(before + 1, timeout=30) - started)
        sent += [ws.send_event(mention_event(f"after reconnect {trial}.{n}")) for n in range(10)]
        acks += [ws.wait_for_ack(envelope_id, timeout=30).ack_seconds for envelope_id in sent]
        time.sleep(0.5)
    late = sum(1 for seconds in acks if seconds > 3.0)
    print(f"(3) refresh_requested: reconnected in {_stats(reconnects)}")
    print(f"    acks of {len(acks)} envelopes sent around it: {_stats(acks, ms=True)}; over 3 s: {late}")


# -- acks under load ---------------------------------------------------------------------------


def _acks_under_load(ws: FakeSocketMode, api: FakeSlack, bot: SocketBot, label: str, args) -> None:
    deps = app_deps(bot.app)
    deps.work.wait_idle(60)
    value = _warm_up_button(api, lambda event: ws.send_event(event), deps)
    api.clear()
    started = time.perf_counter()
    for n in range(args.mentions):
        ws.send_event(mention_event(f"queued question {n}", channel=f"C0LOAD{n % 5}"))
    command = ws.wait_for_ack(ws.send_command(command_form(QUESTION, api.response_url("cmd"))), timeout=30)
    queued = deps.work.queued
    click = ws.wait_for_ack(
        ws.send_interaction(block_actions(render.ACTION_HELPFUL, value, api.response_url("fb"))), 30
    )
    _report_load(label, args, queued, command.ack_seconds, click.ack_seconds, api, deps, started)


def _http_acks_under_load(api: FakeSlack, tmp: Path, answerer, args) -> None:
    server = AppServer(_config(api, tmp, args), answerer, api)
    try:
        deps = server.deps
        value = _warm_up_button(api, lambda event: server.post_event(event), deps)
        api.clear()
        started = time.perf_counter()
        for n in range(args.mentions):
            server.post_event(mention_event(f"queued question {n}", channel=f"C0LOAD{n % 5}"))
        queued = deps.work.queued
        command = server.post_command(QUESTION)
        click = server.post_interaction(block_actions(render.ACTION_HELPFUL, value, api.response_url("fb")))
        statuses = (command.status, click.status)
        _report_load("HTTP", args, queued, command.seconds, click.seconds, api, deps, started, statuses)
    finally:
        server.stop()


def _warm_up_button(api: FakeSlack, send, deps) -> str:
    send(mention_event(QUESTION))
    reply = api.wait_for("chat.postMessage", timeout=60)[-1].body
    deps.work.wait_idle(60)
    return next(
        element["value"]
        for block in reply.get("blocks", [])
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") == render.ACTION_HELPFUL
    )


def _report_load(label, args, queued, command_s, click_s, api, deps, started, statuses=(200, 200)) -> None:
    api.wait_for("chat.postMessage", args.mentions, timeout=600)
    api.wait_for("response_url", 2, timeout=600)
    drained = time.perf_counter() - started
    ok = "met" if max(command_s, click_s) < 3.0 and statuses == (200, 200) else "MISSED"
    print(
        f"(4) {label}: {args.mentions} mentions sent ({queued} queued at the command's ack),"
        " then a slash command and a click:"
    )
    print(
        f"    ack: command {command_s * 1000:.0f} ms, click {click_s * 1000:.0f} ms"
        f" (HTTP {statuses}); < 3 s: {ok}"
    )
    print(
        f"    all {args.mentions} answers and the command's reply delivered {drained:.1f} s after the first"
    )


# -- tokens, and the old client ----------------------------------------------------------------


def _rejected_token(api: FakeSlack, config) -> None:
    api.error_next("apps.connections.open", "invalid_auth")
    try:
        check_app_token(config, APP_TOKEN)
        line = "(no error!)"
    except SlackConfigError as exc:
        line = str(exc)
    print(
        f"(5) revoked app token, what `trbot serve` prints ({line.count(chr(10)) + 1} line):"
        f"\n    Error: {line}"
    )


def _baseline(api: FakeSlack, ws: FakeSocketMode, tmp: Path, answerer, args) -> None:
    """slack_sdk's built-in Socket Mode client (bolt's default adapter): what trbot used before."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    config = _config(api, tmp, args)
    store = StateStore(config.paths.state_db)
    app = create_app(config, answerer, store, token="xoxb-test", token_verification_enabled=False)
    handler = SocketModeHandler(app, APP_TOKEN)
    before = ws.connections
    handler.connect()
    try:
        ws.wait_connected(before + 1, timeout=20)
        time.sleep(0.5)
        before = ws.connections
        cpu = time.process_time()
        started = time.perf_counter()
        ws.drop()
        try:
            reconnect = f"{ws.wait_connected(before + 1, timeout=args.cap) - started:.1f} s"
        except AssertionError:
            reconnect = f"not within {args.cap:.0f} s"
        wall = time.perf_counter() - started
        print(
            f"baseline, slack_sdk's built-in client: TCP reset -> reconnected {reconnect}; "
            f"CPU {time.process_time() - cpu:.1f} s in {wall:.1f} s"
        )
        time.sleep(1.0)
        before = ws.connections
        cpu = time.process_time()
        started = time.perf_counter()
        ws.blackhole()
        try:
            reconnect = f"{ws.wait_connected(before + 1, timeout=args.cap) - started:.1f} s"
        except AssertionError:
            reconnect = f"not within {args.cap:.0f} s"
        wall = time.perf_counter() - started
        print(
            f"baseline, slack_sdk's built-in client: half-open link -> reconnected {reconnect}; "
            f"CPU {time.process_time() - cpu:.1f} s in {wall:.1f} s"
        )
    finally:
        handler.close()
        app_deps(app).work.stop()
        app_deps(app).outbox_worker.stop()


def _stats(values: list[float], ms: bool = False) -> str:
    if not values:
        return "n/a"
    scale, unit = (1000, "ms") if ms else (1, "s")
    med = statistics.median(values) * scale
    return f"median {med:.{0 if ms else 2}f} {unit}, max {max(values) * scale:.{0 if ms else 2}f} {unit}"


if __name__ == "__main__":
    sys.exit(main())
