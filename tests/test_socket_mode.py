"""Socket Mode (the default transport) against a local WebSocket server speaking its protocol.

The bot runs as ``trbot serve`` runs it (``start_serving``, ``run_socket_mode``, ``finish_serving``)
with the fake Web API answering ``apps.connections.open`` with the local server's ws:// URL. The
server sends hello and envelopes, records acks, asks for a refresh, and drops or silences links.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.config import OutboxSettings, PathSettings
from bot.outbox import Outbox
from bot.slack import answers_render as render
from bot.slack.app import app_deps, create_app
from bot.slack.serve import (
    ServeStopped,
    SlackConfigError,
    check_app_token,
    run_socket_mode,
    stop_on_signals,
)
from bot.state import StateStore
from tests.fake_slack import FakeSlack
from tests.fake_socket_mode import FakeSocketMode
from tests.slack_harness import (
    FakeAnswerer,
    SocketBot,
    block_actions,
    command_form,
    make_answer,
    make_config,
    mention_event,
)

REPO = Path(__file__).resolve().parent.parent
APP_TOKEN = "xapp-1-A0TRBOT-1234-abcdef"
ACK_LIMIT = 3.0  # Slack's: an envelope not acked within 3 s is retried


@pytest.fixture
def api():
    with FakeSlack() as api:
        yield api


@pytest.fixture
def ws(api):
    with FakeSocketMode() as ws:
        api.socket_mode_url = ws.url
        yield ws


def _config(api, tmp_path):
    config = make_config(api.api_url, tmp_path)
    outbox = OutboxSettings(
        backoff_initial_seconds=0.05, backoff_max_seconds=0.5, start_drain_seconds=2.0, stop_drain_seconds=2.0
    )
    return replace(config, outbox=outbox)


@pytest.fixture
def start_bot(api, ws, tmp_path):
    bots: list[SocketBot] = []

    def start(answerer=None, config=None) -> SocketBot:
        bot = SocketBot(config or _config(api, tmp_path), answerer or FakeAnswerer(), APP_TOKEN)
        bots.append(bot)
        ws.wait_connected(ws.connections + 1)
        return bot

    yield start
    for bot in bots:
        if bot.thread.is_alive():
            bot.stop()


def _replies(api) -> list[str]:
    return [call.body.get("thread_ts") for call in api.calls_to("chat.postMessage")]


# -- the protocol ----------------------------------------------------------------------------


def test_events_commands_and_clicks_are_acked_and_answered(start_bot, api, ws):
    start_bot()
    event = mention_event("Do I need an export licence?")
    ack = ws.wait_for_ack(ws.send_event(event), timeout=ACK_LIMIT)
    assert ack.ack == {"envelope_id": ack.envelope_id}
    assert api.wait_for("chat.postMessage")[0].body["thread_ts"] == event["ts"]
    command = ws.wait_for_ack(
        ws.send_command(command_form("Who needs ATAS?", api.response_url("cmd"))), timeout=ACK_LIMIT
    )
    assert "Looking that up" in command.ack["payload"]["text"]
    private = api.wait_for("response_url")[0].body
    assert "You asked" in json.dumps(private)
    click = block_actions(
        render.ACTION_HELPFUL, _button(private, render.ACTION_HELPFUL), api.response_url("fb")
    )
    ws.wait_for_ack(ws.send_interaction(click), timeout=ACK_LIMIT)
    api.wait_for("response_url", 2)


def _button(message: dict, action_id: str) -> str:
    return next(
        element["value"]
        for block in message.get("blocks", [])
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") == action_id
    )


def test_acks_do_not_wait_for_answers(start_bot, api, ws):
    def slow(question, context):
        time.sleep(0.3)
        return make_answer(question)

    start_bot(FakeAnswerer(slow))
    ids = [ws.send_event(mention_event(f"question {n}")) for n in range(10)]
    command = ws.send_command(command_form("and this?", api.response_url("cmd")))
    for envelope_id in [*ids, command]:
        ws.wait_for_ack(envelope_id, timeout=ACK_LIMIT)
    assert len(api.calls_to("chat.postMessage")) < 10  # acked long before the answers were done
    api.wait_for("chat.postMessage", 10, timeout=15)


def test_a_refresh_reconnects_and_the_next_envelopes_are_acked_in_time(start_bot, api, ws):
    start_bot()
    before = ws.connections
    ws.refresh()
    ws.wait_connected(before + 1, timeout=5)
    assert len(api.calls_to("apps.connections.open")) >= 2  # a fresh URL for the new connection
    for n in range(5):
        ws.wait_for_ack(ws.send_event(mention_event(f"after refresh {n}")), timeout=ACK_LIMIT)
    api.wait_for("chat.postMessage", 5)


def test_a_dropped_link_is_replaced_quickly_without_a_busy_loop(start_bot, api, ws):
    start_bot()
    before = ws.connections
    cpu = time.process_time()
    started = time.monotonic()
    ws.down()  # TCP reset, no close frame, and no new connection for 3 s
    time.sleep(3)
    outage_cpu = time.process_time() - cpu
    ws.up()
    ws.wait_connected(before + 1, timeout=10)
    assert time.monotonic() - started < 3 + 10
    assert outage_cpu < 1.0, f"{outage_cpu:.2f} s of CPU in a 3 s outage: a busy loop"
    ws.wait_for_ack(ws.send_event(mention_event("back?")), timeout=ACK_LIMIT)
    api.wait_for("chat.postMessage")


def test_a_silent_half_open_link_is_noticed_and_replaced(start_bot, ws):
    start_bot()
    before = ws.connections
    ws.blackhole()  # the link stays open but nothing passes: only a ping timeout can tell
    # Without one it is never noticed; the 10 s target is measured by scripts/bench_socket_mode.py.
    ws.wait_connected(before + 1, timeout=20)
    ws.wait_for_ack(ws.send_event(mention_event("still there?")), timeout=ACK_LIMIT)


def test_a_retried_envelope_of_a_done_event_is_acked_and_not_answered_again(start_bot, api, ws):
    bot = start_bot()
    event = mention_event("Do I need a licence?")
    ws.wait_for_ack(ws.send_event(event, event_id="Ev0SOCKET"))
    api.wait_for("chat.postMessage")
    bot.settle()
    ws.wait_for_ack(ws.send_event(event, event_id="Ev0SOCKET", retry_attempt=1), timeout=ACK_LIMIT)
    bot.settle()
    assert len(api.calls_to("chat.postMessage")) == 1


# -- a rejected app-level token ----------------------------------------------------------------


@pytest.mark.parametrize("error", ["invalid_auth", "not_allowed_token_type", "token_revoked"])
def test_a_rejected_app_token_is_one_clear_line(api, tmp_path, error):
    api.error_next("apps.connections.open", error)
    with pytest.raises(SlackConfigError) as raised:
        check_app_token(_config(api, tmp_path), APP_TOKEN)
    message = str(raised.value)
    assert "\n" not in message and "SLACK_APP_TOKEN" in message and "connections:write" in message
    assert error in message and APP_TOKEN not in message


def test_a_token_revoked_while_connecting_also_stops_with_that_line(api, tmp_path):
    store = StateStore(tmp_path / "state.db")
    app = create_app(
        _config(api, tmp_path), FakeAnswerer(), store, token="xoxb-test", token_verification_enabled=False
    )
    api.error_next("apps.connections.open", "invalid_auth")
    with pytest.raises(SlackConfigError, match="SLACK_APP_TOKEN was rejected by Slack \\(invalid_auth\\)"):
        run_socket_mode(app, APP_TOKEN, stop=threading.Event())
    app_deps(app).work.stop()
    app_deps(app).outbox_worker.stop()


def _settings(tmp_path: Path) -> str:
    """app.yml text: the shipped knowledge files, and the databases in the test's folder."""
    own = {"state_db": "state.db", "index_db": "index.db", "watchlist_db": "watchlists.db"}
    lines = ["paths:"]
    for name in (f.name for f in dataclasses.fields(PathSettings)):
        place = tmp_path / own[name] if name in own else REPO / getattr(PathSettings(), name)
        lines.append(f"  {name}: {place}")
    return "\n".join(lines) + "\n"


def test_trbot_serve_with_a_revoked_app_token_prints_one_line(api, tmp_path):
    from bot.cli import attach_slack_commands, cli

    attach_slack_commands()
    settings = tmp_path / "app.yml"
    settings.write_text(_settings(tmp_path))
    api.error_next("apps.connections.open", "invalid_auth")
    env = {"SLACK_BOT_TOKEN": "xoxb-1-test", "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_API_URL": api.api_url}
    result = CliRunner().invoke(cli, ["--config", str(settings), "serve"], env=env)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "SLACK_APP_TOKEN" in lines[0] and "connections:write" in lines[0], (
        result.output
    )
    assert "Traceback" not in result.output


# -- stopping: SIGTERM hands over what is in flight ------------------------------------------


def _slow(question, context):
    time.sleep(0.1)
    return make_answer(question)


def test_stop_mid_burst_then_restart_answers_every_question_exactly_once(start_bot, api, ws):
    first = start_bot(FakeAnswerer(_slow))
    events = [mention_event(f"question {n}") for n in range(20)]
    ids = [f"Ev0STOP{n:04d}" for n in range(20)]
    for event, event_id in zip(events, ids, strict=True):
        ws.wait_for_ack(ws.send_event(event, event_id=event_id))
    time.sleep(0.8)
    first.stop()  # what SIGTERM does
    answered_before = len(api.calls_to("chat.postMessage"))
    assert 0 < answered_before < 20  # some were still queued: handed over, not lost
    second = start_bot(FakeAnswerer(_slow))
    for event, event_id in zip(events, ids, strict=True):  # and Slack retries them all, too
        ws.wait_for_ack(ws.send_event(event, event_id=event_id, retry_attempt=1), timeout=ACK_LIMIT)
    api.wait_for("chat.postMessage", 20, timeout=20)
    second.settle()
    replies = _replies(api)
    assert sorted(replies) == sorted(event["ts"] for event in events)  # all 20, each exactly once
    assert second.store.unfinished_events() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill -9"])
def test_a_real_trbot_serve_stopped_mid_burst_loses_nothing(api, ws, tmp_path, sig):
    settings = tmp_path / "app.yml"
    settings.write_text(
        _settings(tmp_path) + "outbox:\n  backoff_initial_seconds: 0.1\n  stop_drain_seconds: 3\n"
    )
    launcher = textwrap.dedent(
        """\
        import sys, time
        import bot.answer
        from tests.conftest import FakeEmbedder
        from tests.slack_harness import FakeAnswerer, make_answer

        def slow(question, context):
            time.sleep(0.1)
            return make_answer(question)

        def fake_answerer(config):  # the index and model are not the point here
            answerer = FakeAnswerer(slow)
            answerer.embedder = FakeEmbedder()  # what the screening start-up looks for
            return answerer

        bot.answer.open_answerer = fake_answerer
        from bot.cli import main
        sys.argv = ["trbot", "--config", sys.argv[1], "serve"]
        main()
        """
    )
    env = os.environ | {
        "SLACK_BOT_TOKEN": "xoxb-1-test",
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_API_URL": api.api_url,
        "PYTHONPATH": str(REPO),
    }

    def serve() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", launcher, str(settings)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    events = [mention_event(f"question {n}") for n in range(20)]
    first = serve()
    try:
        try:
            ws.wait_connected(1, timeout=30)
        except AssertionError:
            first.kill()
            raise AssertionError(f"trbot serve did not connect:\n{first.communicate()[0]}") from None
        for n, event in enumerate(events):
            ws.wait_for_ack(ws.send_event(event, event_id=f"Ev0SIGTERM{n:03d}"))
        time.sleep(0.8)
        first.send_signal(sig)
        output, _ = first.communicate(timeout=30)
    finally:
        first.kill()
    if sig == signal.SIGTERM:  # it hands its queue over and exits cleanly
        assert first.returncode == 0, output
        assert "SIGTERM" in output and "Traceback" not in output
    assert len(api.calls_to("chat.postMessage")) < 20
    second = serve()  # finishes what the first received but did not answer
    try:
        api.wait_for("chat.postMessage", 20, timeout=30)
        time.sleep(0.3)
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=30)
    finally:
        second.kill()
    assert second.returncode == 0, output
    replies = _replies(api)
    assert set(replies) == {event["ts"] for event in events}  # every question answered
    if sig == signal.SIGTERM:
        assert len(replies) == 20  # each exactly once
    else:  # killed mid-send, a reply may go twice (delivery is at least once): at most that one
        assert len(replies) <= 21
    leaked = [line for line in output.splitlines() if "question 1" in line]
    assert leaked == [], leaked  # question text is never logged


def test_start_up_delivers_the_queued_outbox_before_taking_events(start_bot, api, tmp_path):
    config = _config(api, tmp_path)
    box = Outbox(config.paths.state_db, config.outbox)
    for n in range(3):
        box.enqueue("chat.postMessage", {"channel": "C1", "text": f"left from before {n}"}, kind="answer")
    box.close()
    start_bot(config=config)
    methods = api.methods()
    assert methods.count("chat.postMessage") == 3
    assert methods.index("apps.connections.open") > max(
        i for i, m in enumerate(methods) if m == "chat.postMessage"
    )


def test_sigterm_sets_the_stop_event_and_interrupts_a_blocking_transport():
    stop = threading.Event()
    restore = stop_on_signals(stop, interrupt_main=True)
    try:
        with pytest.raises(ServeStopped):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises in the main thread at once
        assert stop.is_set()
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))
