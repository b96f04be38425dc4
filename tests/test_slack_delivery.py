"""The outbox worker (bot/slack/delivery.py) over real HTTP against the fake Slack Web API."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace

import pytest
from slack_sdk import WebClient

from bot.config import OutboxSettings, config_from_dict
from bot.outbox import Outbox
from bot.slack.delivery import OutboxWorker, build_delivery_client
from tests.fake_slack import FakeSlack
from tests.slack_harness import (
    AppServer,
    FakeAnswerer,
    all_text,
    bot_message_event,
    make_config,
    mention_event,
)

FAST = OutboxSettings(
    backoff_initial_seconds=0.05,
    backoff_max_seconds=0.2,
    backoff_jitter=0.0,
    request_timeout_seconds=2.0,
    lease_seconds=5.0,
)
TEXT = "Can I share the sensor firmware with the partner lab?"


@pytest.fixture
def client(fake):
    return WebClient(token="xoxb-test", base_url=fake.api_url, retry_handlers=[], timeout=2)


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "state.db", FAST)
    yield box
    box.close()


@pytest.fixture
def worker(outbox, client):
    worker = OutboxWorker(outbox, client)
    yield worker
    worker.stop()


def _wait(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def _post(n: int = 0) -> dict:
    return {"channel": "C1", "text": f"{TEXT} #{n}"}


def test_server_errors_are_retried_with_backoff_until_slack_recovers(fake, outbox, worker):
    fake.outage(503)
    ids = [outbox.enqueue("chat.postMessage", _post(n), kind="answer", dedupe_key=f"r{n}") for n in range(3)]
    worker.start()
    _wait(lambda: len([c for c in fake.calls if c.status == 503]) >= 9)
    assert fake.calls_to("chat.postMessage") == [] and outbox.outstanding() == 3
    assert outbox.get(ids[0]).last_error == "HTTP 503 service_unavailable"
    fake.recover()
    posted = fake.wait_for("chat.postMessage", 3)
    _wait(lambda: outbox.outstanding() == 0)
    assert sorted(call.body["text"] for call in posted) == sorted(_post(n)["text"] for n in range(3))
    assert all(outbox.get(i).status == "delivered" and outbox.get(i).attempts >= 3 for i in ids)
    assert outbox.delivered_result("r0")["ts"] == next(
        c.reply["ts"] for c in posted if c.body["text"].endswith("#0")
    )


def test_an_unreachable_slack_and_an_error_page_are_retried(fake, outbox, worker):
    fake.outage(drop=True)
    first = outbox.enqueue("chat.postMessage", _post(1), kind="answer")
    worker.start()
    _wait(lambda: outbox.get(first).attempts >= 2)
    assert "connection error" in outbox.get(first).last_error and not worker.slack_reachable
    fake.outage(502, body="<html><body>Bad gateway: " + TEXT + "</body></html>")
    _wait(lambda: "HTTP 502" in (outbox.get(first).last_error or ""))
    assert TEXT not in outbox.get(first).last_error  # an error page is never copied into the row
    fake.recover()
    fake.wait_for("chat.postMessage")
    _wait(lambda: outbox.get(first).status == "delivered")
    assert worker.slack_reachable


def test_a_rate_limit_waits_for_retry_after(fake, outbox, worker):
    fake.fail_next("chat.postMessage", 1, status=429, retry_after="1")
    outbox.enqueue("chat.postMessage", _post(), kind="answer")
    worker.start()
    fake.wait_for("chat.postMessage", timeout=5)
    attempts = [c for c in fake.calls if c.method == "chat.postMessage"]
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 0.95  # the backoff alone would have been 0.05 s


def test_a_permanent_error_fails_at_once_with_the_error_recorded(fake, outbox, worker, caplog):
    fake.error_next("chat.postMessage", "channel_not_found")
    message_id = outbox.enqueue("chat.postMessage", _post(), kind="case_card", case_ref="RS-2026-0003")
    with caplog.at_level(logging.ERROR):
        worker.start()
        _wait(lambda: outbox.get(message_id).status == "failed")
    time.sleep(0.2)
    assert len([c for c in fake.calls if c.method == "chat.postMessage"]) == 1
    assert outbox.get(message_id).last_error == "channel_not_found"
    assert "RS-2026-0003" in caplog.text and TEXT not in caplog.text


def test_a_message_is_given_up_after_the_configured_time(fake, client, tmp_path, caplog):
    now = [1_800_000_000.0]
    settings = OutboxSettings(give_up_after_hours=2.0, backoff_jitter=0.0, backoff_max_seconds=900.0)
    box = Outbox(tmp_path / "g.db", settings, clock=lambda: now[0])
    worker = OutboxWorker(box, client)
    message_id = box.enqueue("chat.postMessage", _post(), kind="notice", case_ref="RS-2026-0004")
    fake.outage(503)
    with caplog.at_level(logging.ERROR, logger="bot.outbox"):
        while box.outstanding():
            worker.deliver_due()
            now[0] += box.seconds_until_due() or 0
    failed = box.get(message_id)
    assert failed.status == "failed" and failed.last_error.startswith("still failing after 2.0 h")
    assert now[0] == pytest.approx(1_800_000_000.0 + 7200)
    assert "outbox message" in caplog.text and "RS-2026-0004" in caplog.text
    box.close()


def test_dedupe_keys_give_one_message_at_slack(fake, outbox, worker):
    for _ in range(3):
        outbox.enqueue("chat.postMessage", _post(), kind="answer", dedupe_key="reply:Ev0SAME")
    worker.start()
    fake.wait_for("chat.postMessage")
    time.sleep(0.2)
    assert len(fake.calls_to("chat.postMessage")) == 1


def test_a_card_update_waits_for_the_card_and_uses_its_ts(fake, outbox, worker):
    fake.outage(503, methods={"chat.postMessage"})
    outbox.enqueue(
        "chat.postMessage", _post(), kind="case_card", dedupe_key="case-card:RS-1", case_ref="RS-1"
    )
    outbox.enqueue(
        "chat.update",
        {"channel": "C1", "ts": {"$delivered": "case-card:RS-1", "field": "ts"}, "text": "acknowledged"},
        kind="card_update",
        case_ref="RS-1",
    )
    outbox.enqueue(
        "chat.postMessage",
        {"channel": "C1", "thread_ts": {"$delivered": "case-card:RS-1"}, "text": "note"},
        kind="notice",
        case_ref="RS-1",
    )
    worker.start()
    time.sleep(0.4)
    assert fake.calls_to("chat.update") == []  # the card is not out yet
    fake.recover()
    update = fake.wait_for("chat.update")[0].body
    card, note = fake.wait_for("chat.postMessage", 2)
    assert update["ts"] == card.reply["ts"] and note.body["thread_ts"] == card.reply["ts"]


def test_response_url_outage_then_recovery_and_an_expired_url(fake, outbox, worker):
    fake.outage(503, methods={"response_url"})
    hook = outbox.enqueue(
        "response_url", {"url": fake.response_url("cmd"), "message": {"text": TEXT}}, kind="answer"
    )
    worker.start()
    _wait(lambda: outbox.get(hook).attempts >= 2)
    assert outbox.get(hook).last_error == "response_url answered HTTP 503"
    fake.recover()
    assert fake.wait_for("response_url")[0].body == {"text": TEXT}
    _wait(lambda: outbox.get(hook).status == "delivered")
    fake.outage(404, methods={"response_url"}, body="expired_url")
    gone = outbox.enqueue(
        "response_url", {"url": fake.response_url("old"), "message": {"text": "x"}}, kind="answer"
    )
    _wait(lambda: outbox.get(gone).status == "failed")
    assert outbox.get(gone).last_error == "response_url answered HTTP 404 expired_url"


def test_removing_a_reaction_that_is_gone_counts_as_delivered(fake, outbox, worker):
    fake.error_next("reactions.remove", "no_reaction")
    message_id = outbox.enqueue(
        "reactions.remove", {"channel": "C1", "timestamp": "1.0", "name": "hourglass"}, kind="progress"
    )
    worker.start()
    _wait(lambda: outbox.get(message_id).status == "delivered")


def test_delivery_continues_across_a_restart(fake, client, tmp_path):
    path = tmp_path / "restart.db"
    fake.outage(503)
    first_box = Outbox(path, FAST)
    first = OutboxWorker(first_box, client).start()
    for n in range(5):
        first_box.enqueue("chat.postMessage", _post(n), kind="answer", dedupe_key=f"reply:{n}")
    _wait(lambda: len(fake.calls) >= 5)
    first.stop()
    first_box.close()
    fake.recover()
    second_box = Outbox(path, FAST)  # the restarted bot, the same database
    second = OutboxWorker(second_box, client)
    assert second.drain(5.0) == 0
    texts = [call.body["text"] for call in fake.calls_to("chat.postMessage")]
    assert sorted(texts) == sorted(_post(n)["text"] for n in range(5))
    second_box.close()


def test_a_message_claimed_by_a_crashed_sender_is_sent_after_its_lease(fake, client, tmp_path):
    now = [1_800_000_000.0]
    path = tmp_path / "lease.db"
    crashed = Outbox(path, FAST, clock=lambda: now[0])
    crashed.enqueue("chat.postMessage", _post(), kind="answer", dedupe_key="reply:EvLEASE")
    crashed.claim()  # ... and the process died before sending
    crashed.close()
    restarted = Outbox(path, FAST, clock=lambda: now[0])
    worker = OutboxWorker(restarted, client)
    assert worker.deliver_due() == 0  # the lease still holds
    now[0] += FAST.lease_seconds
    assert worker.deliver_due() == 1
    assert len(fake.calls_to("chat.postMessage")) == 1
    restarted.close()


def test_drain_reports_what_is_left_when_slack_is_down(fake, outbox, client):
    worker = OutboxWorker(outbox, client)
    outbox.enqueue("chat.postMessage", _post(), kind="answer")
    fake.outage(503)
    started = time.monotonic()
    assert worker.drain(0.5) == 1
    assert 0.45 <= time.monotonic() - started < 2
    fake.recover()
    assert worker.drain(2.0) == 0


def test_an_enqueue_wakes_the_sleeping_worker(fake, outbox, worker):
    worker.idle_poll = 30.0
    worker.start()
    time.sleep(0.1)  # asleep: nothing is due
    started = time.perf_counter()
    outbox.enqueue("chat.postMessage", _post(), kind="answer")
    posted = fake.wait_for("chat.postMessage")[0]
    assert posted.at - started < 0.5


def test_the_delivery_client_has_no_retries_of_its_own():
    config = config_from_dict(
        {"slack": {"api_url": "http://127.0.0.1:9/api"}, "outbox": {"request_timeout_seconds": 3}}
    )
    client = build_delivery_client(config, "xoxb-test")
    assert (
        client.retry_handlers == [] and client.timeout == 3 and client.base_url == "http://127.0.0.1:9/api/"
    )


# -- the findings in today's event path, over the whole app --------------------------------------


@pytest.fixture
def make_server(fake, tmp_path):
    servers: list[AppServer] = []

    def start(answerer=None, warm: bool = True, **slack) -> AppServer:
        config = make_config(fake.api_url, tmp_path, **slack)
        config = replace(config, outbox=OutboxSettings(backoff_initial_seconds=0.2, backoff_max_seconds=0.5))
        server = AppServer(config, answerer or FakeAnswerer(), fake)
        servers.append(server)
        # bolt's authorization calls auth.test once, on the first request (trbot serve does it at
        # start-up, as token verification): do it now, before a test takes Slack down.
        if warm:
            server.post_event(bot_message_event("warm-up"))
            server.settle()
            fake.clear()
        return server

    yield start
    for server in servers:
        server.stop()


def _recover_after(fake: FakeSlack, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, fake.recover)
    timer.start()
    return timer


def _no_apology(fake: FakeSlack) -> None:
    assert all("Sorry" not in json.dumps(call.body) for call in fake.calls if call.ok)


def test_a_lost_connection_on_the_progress_reaction_does_not_lose_the_answer(make_server, fake):
    server = make_server()
    fake.outage(drop=True, methods={"reactions.add"})  # posting works, the cosmetic reaction does not
    event = mention_event("Do I need an export licence?")
    server.post_event(event)
    reply = fake.wait_for("chat.postMessage")[0].body
    assert reply["thread_ts"] == event["ts"] and "*[1]*" in all_text(reply)
    fake.wait_for("reactions.remove")  # it may have been added: its removal is queued all the same
    server.settle()
    _no_apology(fake)


def test_an_answer_ready_while_slack_is_unreachable_is_delivered_when_it_is_back(make_server, fake):
    server = make_server()
    fake.outage(drop=True)  # the whole Web API: longer than any client-side retry would last
    _recover_after(fake, 6.0)
    event = mention_event("Do I need an export licence?")
    assert server.post_event(event).status == 200
    reply = fake.wait_for("chat.postMessage", timeout=15)[0].body
    assert reply["thread_ts"] == event["ts"] and "*[1]*" in all_text(reply)  # the answer, not an apology
    fake.wait_for("reactions.remove")  # and the hourglass is cleared after the outage
    server.settle()
    assert len(fake.calls_to("chat.postMessage")) == 1
    _no_apology(fake)


def test_a_slash_command_answer_survives_a_response_url_outage(make_server, fake):
    server = make_server()
    fake.outage(503, methods={"response_url"})
    _recover_after(fake, 6.0)
    result = server.post_command("Do I need a licence?")
    assert result.status == 200 and "Looking that up" in result.body
    private = fake.wait_for("response_url", timeout=15)[0].body
    assert private["response_type"] == "ephemeral" and "You asked" in all_text(private)
    server.settle()
    _no_apology(fake)


def test_an_answer_queued_during_an_outage_is_delivered_once_after_a_restart(make_server, fake):
    first = make_server()
    fake.outage(503)
    event = mention_event("Do I need a licence?")
    first.post_event(event, event_id="Ev0OUTAGE")
    _wait(lambda: first.deps.outbox.counts()["pending"] >= 1)
    first.stop()  # the bot restarts while Slack is still down
    fake.recover()
    second = make_server(warm=False)  # same database: the outbox is delivered, the retried event skipped
    second.post_event(event, event_id="Ev0OUTAGE", retry_num=1)
    fake.wait_for("chat.postMessage")
    second.settle()
    assert len(fake.calls_to("chat.postMessage")) == 1
