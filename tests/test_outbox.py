"""The outbox core (bot/outbox.py): queueing, dedupe, claims and leases, backoff, give-up, references."""

from __future__ import annotations

import logging
import socket
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace

import pytest

from bot.config import ConfigError, OutboxSettings, config_from_dict
from bot.outbox import AFTER_GRACE_SECONDS, Outbox, OutboxError

START = 1_800_000_000.0
SECRET_TEXT = "Can I send the drone design files to Dr Example at the ministry?"


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def settings():
    return OutboxSettings(backoff_jitter=0.0, backoff_initial_seconds=1.0, backoff_max_seconds=8.0)


@pytest.fixture
def outbox(tmp_path, settings, clock):
    box = Outbox(tmp_path / "state.db", settings, clock=clock)
    yield box
    box.close()


def _post(text: str = SECRET_TEXT) -> dict:
    return {"channel": "C1", "text": text}


def test_a_message_is_claimed_delivered_and_its_result_kept_without_its_text(outbox):
    message_id = outbox.enqueue("chat.postMessage", _post(), kind="answer", dedupe_key="reply:Ev1")
    [delivery] = outbox.claim()
    assert (delivery.id, delivery.method, delivery.payload, delivery.attempts) == (
        message_id,
        "chat.postMessage",
        _post(),
        1,
    )
    assert outbox.claim() == []  # claimed: nobody else gets it
    outbox.mark_delivered(message_id, {"ok": True, "ts": "1.5", "channel": "C1", "message": {"text": "x"}})
    assert outbox.delivered_result("reply:Ev1") == {"ts": "1.5", "channel": "C1"}
    stored = outbox.get(message_id)
    assert stored.status == "delivered" and stored.payload is None and stored.delivered_at
    assert outbox.claim() == [] and outbox.outstanding() == 0


def test_the_same_dedupe_key_queues_nothing_more_even_after_delivery(outbox):
    first = outbox.enqueue("chat.postMessage", _post("one"), kind="answer", dedupe_key="reply:Ev1")
    assert outbox.enqueue("chat.postMessage", _post("two"), kind="answer", dedupe_key="reply:Ev1") == first
    [delivery] = outbox.claim(10)
    assert delivery.payload["text"] == "one"
    outbox.mark_delivered(first, {"ts": "1.0"})
    assert outbox.enqueue("chat.postMessage", _post("three"), kind="answer", dedupe_key="reply:Ev1") == first
    assert outbox.claim(10) == [] and len(outbox.list()) == 1
    # Messages without a key are never deduplicated.
    assert outbox.enqueue("chat.postMessage", _post(), kind="notice") != outbox.enqueue(
        "chat.postMessage", _post(), kind="notice"
    )


def test_transient_failures_back_off_exponentially_up_to_the_cap(outbox, clock):
    message_id = outbox.enqueue("chat.postMessage", _post(), kind="answer")
    waits = []
    for _ in range(6):
        [delivery] = outbox.claim()
        assert outbox.record_failure(delivery.id, "HTTP 503") == "pending"
        assert outbox.claim() == []  # not due yet
        waits.append(outbox.seconds_until_due())
        clock.advance(waits[-1])
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    [delivery] = outbox.claim()
    assert delivery.attempts == 7 and outbox.get(message_id).last_error == "HTTP 503"


def test_jitter_shortens_each_wait_by_at_most_its_fraction(tmp_path, clock):
    box = Outbox(tmp_path / "j.db", OutboxSettings(backoff_jitter=0.5), clock=clock)
    waits = {round(box.backoff(3), 6) for _ in range(200)}
    assert len(waits) > 50 and min(waits) >= 2.0 and max(waits) <= 4.0
    box.close()


def test_retry_after_is_honoured(outbox):
    outbox.enqueue("chat.postMessage", _post(), kind="answer")
    [delivery] = outbox.claim()
    outbox.record_failure(delivery.id, "rate limited (HTTP 429)", retry_after=42)
    assert outbox.seconds_until_due() == pytest.approx(42)


def test_a_permanent_error_fails_at_once_and_is_logged_without_the_text(outbox, caplog):
    message_id = outbox.enqueue("chat.postMessage", _post(), kind="case_card", case_ref="RS-2026-0007")
    [delivery] = outbox.claim()
    with caplog.at_level(logging.ERROR, logger="bot.outbox"):
        assert outbox.record_failure(delivery.id, "channel_not_found", permanent=True) == "failed"
    failed = outbox.get(message_id)
    assert failed.status == "failed" and failed.last_error == "channel_not_found"
    assert outbox.claim() == [] and outbox.outstanding() == 0
    [record] = caplog.records
    line = record.getMessage()
    assert f"outbox message {message_id}" in line and "case_card" in line and "RS-2026-0007" in line
    assert "channel_not_found" in line and SECRET_TEXT not in caplog.text
    assert [m.id for m in outbox.list("failed")] == [message_id]


def test_a_message_is_given_up_after_the_configured_time(tmp_path, clock, caplog):
    settings = OutboxSettings(give_up_after_hours=1.0, backoff_jitter=0.0, backoff_max_seconds=600.0)
    box = Outbox(tmp_path / "g.db", settings, clock=clock)
    message_id = box.enqueue("chat.postMessage", _post(), kind="reminder", case_ref="RS-2026-0001")
    with caplog.at_level(logging.ERROR, logger="bot.outbox"):
        while (claimed := box.claim()) or box.outstanding():
            if claimed:
                box.record_failure(claimed[0].id, "connection error: ConnectionRefusedError")
            clock.advance(box.seconds_until_due() or 0)
    failed = box.get(message_id)
    assert failed.status == "failed" and "still failing after 1.0 h" in failed.last_error
    # The last try is made at the deadline, not skipped because the next backoff would pass it.
    assert clock.now == pytest.approx(START + 3600)
    assert "RS-2026-0001" in caplog.text and SECRET_TEXT not in caplog.text
    box.close()


def test_a_response_url_is_given_up_before_it_expires(outbox, clock, caplog):
    message_id = outbox.enqueue(
        "response_url", {"url": "https://hooks.slack.com/x", "message": {"text": SECRET_TEXT}}, kind="answer"
    )
    other = outbox.enqueue("chat.postMessage", _post(), kind="answer")
    assert outbox.get(message_id).give_up_at < outbox.get(other).give_up_at
    [delivery] = outbox.claim()
    clock.advance(25 * 60)
    with caplog.at_level(logging.ERROR, logger="bot.outbox"):
        assert outbox.record_failure(delivery.id, "response_url answered HTTP 503") == "failed"
    assert "expires a response_url after 30 minutes" in caplog.text and "hooks.slack.com" not in caplog.text


def test_a_response_url_message_needs_a_url_and_a_message(outbox):
    with pytest.raises(OutboxError, match="response_url"):
        outbox.enqueue("response_url", {"text": "hi"}, kind="answer")
    with pytest.raises(OutboxError, match="not JSON"):
        outbox.enqueue("chat.postMessage", {"channel": "C1", "bad": object()}, kind="answer")


def test_a_reference_waits_for_the_card_and_resolves_to_its_ts(outbox):
    card = outbox.enqueue("chat.postMessage", _post("card"), kind="case_card", dedupe_key="case-card:RS-1")
    update = outbox.enqueue(
        "chat.update",
        {"channel": "C1", "ts": {"$delivered": "case-card:RS-1", "field": "ts"}, "text": "updated"},
        kind="card_update",
    )
    reply = outbox.enqueue(
        "chat.postMessage",
        {"channel": "C1", "thread_ts": {"$delivered": "case-card:RS-1"}, "blocks": [{"text": "note"}]},
        kind="notice",
    )
    [claimed] = outbox.claim(10)  # only the card: the others wait for it
    assert claimed.id == card and outbox.outstanding() == 3
    outbox.mark_delivered(card, {"ts": "1700.01", "channel": "C1"})
    dependents = {d.id: d.payload for d in outbox.claim(10)}
    assert dependents[update]["ts"] == "1700.01" and dependents[reply]["thread_ts"] == "1700.01"


def test_a_message_referring_to_a_failed_one_fails_too(outbox):
    card = outbox.enqueue("chat.postMessage", _post(), kind="case_card", dedupe_key="case-card:RS-2")
    update = outbox.enqueue(
        "chat.update", {"channel": "C1", "ts": {"$delivered": "case-card:RS-2"}}, kind="card_update"
    )
    outbox.claim(10)
    outbox.record_failure(card, "channel_not_found", permanent=True)
    assert outbox.claim(10) == []
    assert outbox.get(update).status == "failed" and "case-card:RS-2" in outbox.get(update).last_error


def test_a_reference_to_a_message_never_queued_waits_then_gives_up(outbox, clock, settings):
    update = outbox.enqueue("chat.update", {"ts": {"$delivered": "case-card:NOPE"}}, kind="card_update")
    assert outbox.claim() == [] and outbox.get(update).status == "pending"
    clock.advance(settings.give_up_after_hours * 3600)
    assert outbox.claim() == [] and outbox.get(update).status == "failed"


def test_after_waits_until_the_other_message_is_settled_either_way(outbox):
    outbox.enqueue("chat.postMessage", _post(), kind="answer", dedupe_key="reply:Ev9")
    remove = outbox.enqueue(
        "reactions.remove",
        {"channel": "C1", "timestamp": "1.0", "name": "x"},
        kind="progress",
        after="reply:Ev9",
    )
    [answer] = outbox.claim(10)
    outbox.record_failure(answer.id, "HTTP 503")
    assert outbox.claim(10) == []  # the answer is still to be sent: the hourglass stays for now
    outbox.make_due()
    [again] = outbox.claim(10)
    outbox.record_failure(again.id, "msg_too_long", permanent=True)
    assert [d.id for d in outbox.claim(10)] == [remove]  # failed is settled too: clear the hourglass


def test_a_crashed_senders_lease_expires_and_the_message_is_sent_again(tmp_path, settings, clock):
    path = tmp_path / "crash.db"
    before = Outbox(path, settings, clock=clock)
    message_id = before.enqueue("chat.postMessage", _post(), kind="answer", dedupe_key="reply:Ev5")
    [claimed] = before.claim()
    before.close()  # the process died mid-send: no result recorded
    after = Outbox(path, settings, clock=clock)  # the restarted bot, same database
    assert after.claim() == []  # the lease still holds: the old sender might be alive
    clock.advance(settings.lease_seconds)
    [again] = after.claim()
    assert (again.id, again.attempts) == (message_id, 2) and claimed.id == message_id
    after.mark_delivered(again.id, {"ts": "2.0"})
    assert after.claim() == []
    after.close()


def test_pending_messages_survive_a_restart(tmp_path, settings, clock):
    path = tmp_path / "restart.db"
    first = Outbox(path, settings, clock=clock)
    ids = [first.enqueue("chat.postMessage", _post(str(n)), kind="answer") for n in range(3)]
    [one] = first.claim()
    first.record_failure(one.id, "HTTP 503")
    first.close()
    second = Outbox(path, settings, clock=clock)
    assert second.outstanding() == 3
    second.make_due()  # start-up: try everything once at once
    assert sorted(d.id for d in second.claim(10)) == ids
    second.close()


def test_a_fallback_is_sent_instead_when_slack_answers_one_of_its_errors(outbox, caplog):
    hook = {"url": "https://hooks.slack.com/r", "message": {"text": "shared"}}
    fallback = ("response_url", hook, {"not_in_channel"})
    share = outbox.enqueue("chat.postMessage", _post(), kind="share", dedupe_key="share:1", fallback=fallback)
    later = outbox.enqueue("response_url", {"url": hook["url"], "message": {}}, kind="share", after="share:1")
    outbox.claim()
    with caplog.at_level(logging.WARNING, logger="bot.outbox"):
        assert outbox.record_failure(share, "not_in_channel", permanent=True) == "pending"
    [instead] = outbox.claim(10)  # the same message, sent the other way; what waits for it still waits
    assert (instead.id, instead.method, instead.payload) == (share, "response_url", hook)
    assert "not_in_channel" in caplog.text and "response_url instead" in caplog.text
    outbox.mark_delivered(share, {})
    assert [d.id for d in outbox.claim(10)] == [later]
    # Another permanent error does not use the fallback.
    other = outbox.enqueue("chat.postMessage", _post(), kind="share", dedupe_key="share:2", fallback=fallback)
    outbox.claim()
    assert outbox.record_failure(other, "invalid_blocks", permanent=True) == "failed"


def test_release_puts_a_claimed_message_back_without_counting_the_try(outbox):
    outbox.enqueue("chat.postMessage", _post(), kind="answer")
    [claimed] = outbox.claim()
    outbox.release(claimed.id)
    [again] = outbox.claim()
    assert again.attempts == 1


def test_concurrent_claims_never_hand_out_a_message_twice(tmp_path, settings):
    box = Outbox(tmp_path / "race.db", settings)
    for n in range(200):
        box.enqueue("chat.postMessage", _post(str(n)), kind="answer")
    seen: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        while claimed := box.claim(3):
            with lock:
                seen.extend(d.id for d in claimed)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 200 and len(set(seen)) == 200
    box.close()


def test_list_filters_by_status_and_summaries_hold_no_text(outbox):
    first = outbox.enqueue("chat.postMessage", _post(), kind="answer")
    second = outbox.enqueue("chat.postMessage", _post(), kind="notice", case_ref="RS-2026-0002")
    outbox.claim()
    outbox.record_failure(first, "invalid_blocks", permanent=True)
    assert [m.id for m in outbox.list()] == [second, first]
    assert [m.id for m in outbox.list("failed")] == [first]
    assert [m.id for m in outbox.list("pending")] == [second]
    assert all(SECRET_TEXT not in str(m.summary()) for m in outbox.list())
    assert outbox.counts() == {"pending": 1, "sending": 0, "delivered": 0, "failed": 1}
    with pytest.raises(OutboxError, match="unknown outbox status 'lost'"):
        outbox.list("lost")


def test_prune_deletes_old_settled_messages_but_keeps_those_of_a_case(outbox, clock, settings):
    answer = outbox.enqueue("chat.postMessage", _post(), kind="answer")
    card = outbox.enqueue(
        "chat.postMessage", _post(), kind="case_card", case_ref="RS-1", dedupe_key="card:RS-1"
    )
    waiting = outbox.enqueue("chat.postMessage", _post(), kind="answer")
    for delivery in outbox.claim(2):
        outbox.mark_delivered(delivery.id, {"ts": "1.0"})
    clock.advance(settings.keep_days * 86400 + 1)
    assert outbox.prune() == 1
    assert outbox.get(answer) is None and outbox.get(card) is not None and outbox.get(waiting) is not None
    assert outbox.delivered_result("card:RS-1") == {"ts": "1.0"}


def test_outbox_settings_are_range_checked():
    with pytest.raises(ConfigError, match="outbox.give_up_after_hours"):
        config_from_dict({"outbox": {"give_up_after_hours": 0}})
    with pytest.raises(ConfigError, match="outbox.response_url_give_up_after_minutes"):
        config_from_dict({"outbox": {"response_url_give_up_after_minutes": 45}})
    with pytest.raises(ConfigError, match="outbox.lease_seconds"):
        config_from_dict({"outbox": {"lease_seconds": 5, "request_timeout_seconds": 10}})
    with pytest.raises(ConfigError, match="outbox.backoff_jitter"):
        config_from_dict({"outbox": {"backoff_jitter": 1.5}})
    with pytest.raises(ConfigError, match="outbox.backoff_max_seconds"):
        config_from_dict({"outbox": {"backoff_max_seconds": 0.5}})
    assert replace(OutboxSettings(), keep_days=1.0).keep_days == 1.0


def test_a_dead_senders_messages_are_taken_over_before_their_lease_ends(tmp_path, settings, clock):
    path = tmp_path / "dead.db"
    box = Outbox(path, settings, clock=clock)
    message_id = box.enqueue("chat.postMessage", _post(), kind="answer")
    box.claim()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE outbox SET lease_owner = ?", [f"{socket.gethostname()}:{child.pid}:dead"])
    conn.commit()
    conn.close()
    [again] = box.claim()  # its sender was killed: no need to wait out the lease
    assert again.id == message_id and again.attempts == 2
    box.close()


def test_after_a_message_not_queued_yet_waits_for_it_then_goes_anyway(outbox, clock):
    notice = outbox.enqueue("chat.postEphemeral", _post(), kind="case_notice", after="reply:Ev7")
    assert outbox.claim(10) == []  # the answer it follows is about to be queued
    answer = outbox.enqueue("chat.postMessage", _post(), kind="answer", dedupe_key="reply:Ev7")
    [first] = outbox.claim(10)
    assert first.id == answer
    outbox.mark_delivered(answer, {"ts": "3.0"})
    assert [d.id for d in outbox.claim(10)] == [notice]
    outbox.mark_delivered(notice, {})
    # One whose predecessor is never queued (the process died in between) is sent after the grace.
    lonely = outbox.enqueue("chat.postEphemeral", _post(), kind="case_notice", after="reply:Gone")
    assert outbox.claim(10) == []
    clock.advance(AFTER_GRACE_SECONDS)
    assert [d.id for d in outbox.claim(10)] == [lonely]
