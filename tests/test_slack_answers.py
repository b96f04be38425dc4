"""Listeners called directly, with a mocked WebClient (no HTTP): parsing, routing, error paths."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import replace
from unittest.mock import MagicMock

import pytest
from slack_bolt import BoltContext, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.records import AnswerStatus
from bot.slack import answers as listeners
from bot.slack import answers_render as render
from bot.slack.answers import Ask
from bot.slack.deps import BotDeps
from bot.state import StateStore
from tests.fake_slack import BOT_USER_ID
from tests.slack_harness import (
    CHANNEL,
    DM,
    USER,
    FakeAnswerer,
    dm_event,
    envelope,
    make_answer,
    make_config,
    mention_event,
    message_event,
)


@pytest.fixture
def deps(tmp_path):
    config = make_config("http://127.0.0.1:9/api/", tmp_path, channels={"C0ALL": {"mode": "all"}})
    store = StateStore(config.paths.state_db)
    yield BotDeps(config, FakeAnswerer(), store)
    store.close()


@pytest.fixture
def client():
    client = MagicMock(spec=WebClient)
    client.chat_postMessage.return_value = {"ok": True, "ts": "1700000009.000100"}
    return client


@pytest.fixture
def context():
    return BoltContext({"bot_user_id": BOT_USER_ID})


def _api_error(error: str) -> SlackApiError:
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="x",
        req_args={},
        data={"ok": False, "error": error},
        headers={},
        status_code=200,
    )
    return SlackApiError(error, response)


def test_question_from_text_removes_the_bot_mention_and_unescapes():
    text = f"<@{BOT_USER_ID}> does &lt;this&gt; &amp; <!here> need <@{BOT_USER_ID}|trbot> a licence?"
    assert listeners.question_from_text(text, BOT_USER_ID) == "does <this> & <!here> need a licence?"
    assert listeners.question_from_text("  hi  there ", None) == "hi there"


def test_duplicate_events_are_acknowledged_without_processing(deps):
    body = envelope(dm_event("q"), "Ev0DUP")
    calls = []
    assert listeners.skip_duplicate_events(body, deps, lambda: calls.append(1)) is None
    response = listeners.skip_duplicate_events(body, deps, lambda: calls.append(2))
    assert isinstance(response, BoltResponse) and response.status == 200 and calls == [1]
    assert listeners.skip_duplicate_events({"type": "block_actions"}, deps, lambda: calls.append(3)) is None
    assert calls == [1, 3]


def test_plain_channel_messages_are_not_answered_in_mention_channels(deps, client, context):
    listeners.handle_message(message_event("Do I need a licence?"), context, client, deps)
    listeners.handle_message(message_event("Do I need a licence?", thread_ts="1.0"), context, client, deps)
    client.chat_postMessage.assert_not_called()
    assert deps.answerer.calls == []


def test_human_subtypes_in_dms_are_answered(deps, client, context):
    listeners.handle_message(
        dm_event("With a file: do I need a licence?") | {"subtype": "file_share"}, context, client, deps
    )
    assert client.chat_postMessage.call_args.kwargs["channel"] == DM


def test_a_mention_from_a_bot_is_ignored(deps, client, context):
    listeners.handle_app_mention(mention_event("q") | {"bot_id": "B0OTHER"}, context, client, deps)
    client.chat_postMessage.assert_not_called()


def test_short_follow_ups_keep_the_thread_question_and_full_questions_replace_it(deps, client):
    first = Ask("Do I need an export licence to share software abroad?", CHANNEL, USER, thread_ts="1.0")
    listeners.answer_and_reply(first, client, deps)
    short = replace(first, question="what about China?", context=first.question)
    listeners.answer_and_reply(short, client, deps)
    assert deps.store.thread_question(CHANNEL, "1.0") == first.question
    long = replace(
        first,
        question="Separately, what due diligence do I need before partnering with a company "
        "that has links to a foreign military?",
        context=first.question,
    )
    listeners.answer_and_reply(long, client, deps)
    assert deps.store.thread_question(CHANNEL, "1.0") == long.question


def test_a_failed_progress_reaction_does_not_stop_the_answer(deps, client, caplog):
    client.reactions_add.side_effect = _api_error("missing_scope")
    with caplog.at_level(logging.WARNING):
        listeners.answer_and_reply(Ask("q", CHANNEL, USER, thread_ts="1.0", message_ts="1.0"), client, deps)
    client.chat_postMessage.assert_called_once()
    client.reactions_remove.assert_not_called()
    assert "missing_scope" in caplog.text


def test_when_even_the_apology_cannot_be_sent_both_failures_are_logged(deps, client, caplog):
    client.chat_postMessage.side_effect = _api_error("channel_not_found")
    with caplog.at_level(logging.ERROR, logger="bot.slack.answers"):
        listeners.answer_and_reply(Ask("q", CHANNEL, USER), client, deps)
    assert client.chat_postMessage.call_count == 2  # the answer, then the apology
    references = {r.getMessage().split("reference ")[-1].rstrip(")") for r in caplog.records}
    assert len(references) == 1 and all(r.exc_info for r in caplog.records)


def test_unsolicited_off_topic_stays_quiet_but_asked_off_topic_is_answered(deps, client):
    deps = replace(deps, answerer=FakeAnswerer(lambda q, c: make_answer(q, status=AnswerStatus.OFF_TOPIC)))
    listeners.answer_and_reply(Ask("lunch?", "C0ALL", USER, unsolicited=True), client, deps)
    client.chat_postMessage.assert_not_called()
    listeners.answer_and_reply(Ask("lunch?", "C0ALL", USER), client, deps)
    assert "doesn't cover" in client.chat_postMessage.call_args.kwargs["text"]


def test_home_opened_publishes_the_home_view(deps, client):
    listeners.handle_home_opened({"type": "app_home_opened", "user": USER, "tab": "home"}, client, deps)
    view = client.views_publish.call_args.kwargs["view"]
    assert client.views_publish.call_args.kwargs["user_id"] == USER and view["type"] == "home"


def test_help_command_acks_with_usage(deps, client):
    ack = MagicMock()
    listeners.handle_command(ack, {"text": "help", "channel_id": CHANNEL, "user_id": USER}, client, deps)
    assert "/trusted-research" in ack.call_args.kwargs["text"] and deps.answerer.calls == []


HOOK = "https://hooks.slack.com/actions/T0TEAM/1/secret"


def test_a_broken_button_value_gets_a_note_and_a_failing_store_an_apology(deps, client, monkeypatch):
    sent = []
    monkeypatch.setattr(
        listeners, "send_to_response_url", lambda url, message, deps, **kwargs: sent.append(message)
    )
    body = {"user": {"id": USER}, "channel": {"id": CHANNEL}, "response_url": HOOK, "trigger_id": "t"}
    ack = MagicMock()
    listeners.handle_feedback_action(
        ack, body, {"action_id": render.ACTION_HELPFUL, "value": "not json"}, client, deps
    )
    ack.assert_called_once()
    assert "no longer have that answer" in sent[0]["text"] and sent[0]["response_type"] == "ephemeral"
    value = render.encode_action_value(deps.store.save_answer(make_answer("q"), user=USER, channel=CHANNEL))
    monkeypatch.setattr(deps.store, "add_feedback", MagicMock(side_effect=sqlite3.OperationalError("disk")))
    listeners.handle_feedback_action(
        ack, body, {"action_id": render.ACTION_HELPFUL, "value": value}, client, deps
    )
    assert "TR-" in sent[1]["text"]


def test_feedback_stores_the_stored_answer_not_the_payload(deps, client, monkeypatch):
    monkeypatch.setattr(listeners, "send_to_response_url", lambda url, message, deps, **kwargs: None)
    answer_id = deps.store.save_answer(make_answer("Do I need a licence?"), user=USER, channel=CHANNEL)
    body = {"user": {"id": "U0READER"}, "channel": {"id": "C0ELSEWHERE"}, "response_url": HOOK}
    value = render.encode_action_value(answer_id)
    listeners.handle_feedback_action(
        MagicMock(), body, {"action_id": render.ACTION_HELPFUL, "value": value}, client, deps
    )
    [row] = deps.store.list_feedback()
    assert (row.user, row.channel, row.question) == ("U0READER", CHANNEL, "Do I need a licence?")
    assert row.chunk_ids == ("export-controls.md#1", "export-controls.md#2")


def test_resolve_action_value_reads_the_database(deps):
    answer_id = deps.store.save_answer(
        make_answer("q"), user=USER, channel=CHANNEL, thread_ts="1.2", context="c"
    )
    value = listeners.resolve_action_value(render.encode_action_value(answer_id), deps)
    assert (value.question, value.context, value.thread_ts, value.user, value.channel) == (
        "q",
        "c",
        "1.2",
        USER,
        CHANNEL,
    )
    assert listeners.resolve_action_value('{"q": "forged"}', deps) is None


def test_response_urls_off_slack_hosts_are_dropped_and_not_logged(deps, caplog):
    body = {"response_url": "https://evil.example/steal", "user": {"id": USER}}
    with caplog.at_level(logging.DEBUG):
        assert "response_url" not in listeners.checked_body(body, deps)
        assert listeners.checked_response_url("https://evil.example/steal", deps) is None
    assert listeners.checked_body({"response_url": HOOK}, deps)["response_url"] == HOOK
    assert "evil.example" not in caplog.text


def test_acknowledgements_in_a_dm_are_not_answered(deps, client, context):
    for text in ("thanks!", "ok 👍", "lol"):
        listeners.handle_message(dm_event(text), context, client, deps)
    assert deps.answerer.calls == [] and not client.chat_postMessage.called


def test_unsolicited_not_covered_and_refused_questions_stay_quiet(deps, client):
    deps = replace(deps, answerer=FakeAnswerer(lambda q, c: make_answer(q, status=AnswerStatus.NOT_COVERED)))
    listeners.answer_now(Ask("Do partners need vetting?", "C0ALL", USER, unsolicited=True), client, deps)
    refuse = FakeAnswerer(lambda q, c: (_ for _ in ()).throw(listeners.QuestionError("too long")))
    listeners.answer_now(
        Ask("x" * 5000, "C0ALL", USER, unsolicited=True), client, replace(deps, answerer=refuse)
    )
    client.chat_postMessage.assert_not_called()


def test_feedback_submission_with_bad_metadata_reports_an_error_in_the_modal(deps):
    ack = MagicMock()
    view = {"private_metadata": "garbage", "state": {"values": {}}}
    listeners.handle_feedback_submission(ack, {"user": {"id": USER}}, view, deps)
    assert ack.call_args.kwargs["response_action"] == "errors"
    assert "reference TR-" in ack.call_args.kwargs["errors"][render.REASON_BLOCK]


def test_feedback_reason_is_only_added_to_the_users_own_feedback(deps):
    feedback_id = deps.store.add_feedback(
        user=USER, channel=CHANNEL, question="q", chunk_ids=[], helpful=False
    )
    view = {
        "private_metadata": json.dumps({"feedback_id": feedback_id}),
        "state": {"values": {"reason": {"reason": {"value": " not useful "}}}},
    }
    listeners.handle_feedback_submission(MagicMock(), {"user": {"id": "U0SOMEONEELSE"}}, view, deps)
    assert deps.store.list_feedback()[0].reason is None
    listeners.handle_feedback_submission(MagicMock(), {"user": {"id": USER}}, view, deps)
    assert deps.store.list_feedback()[0].reason == "not useful"


def test_channel_settings_fall_back_to_the_defaults(deps):
    assert deps.channel_settings("C0ALL").mode == "all"
    assert (deps.channel_settings("C0OTHER").mode, deps.channel_settings("C0OTHER").visibility) == (
        "mention",
        "public",
    )


def test_a_full_disk_under_the_state_database_still_gives_the_answer(deps, client, monkeypatch, caplog):
    full = sqlite3.OperationalError("database or disk is full")
    for name in ("save_answer", "remember_thread"):
        monkeypatch.setattr(deps.store, name, MagicMock(side_effect=full))
    with caplog.at_level(logging.INFO, logger="bot.slack.answers"):
        listeners.answer_now(Ask("Do I need a licence?", CHANNEL, USER, thread_ts="1.0"), client, deps)
    posted = client.chat_postMessage.call_args.kwargs
    assert "Here is what our guidance says" in posted["text"]  # the answer, without its buttons
    assert not any(b["type"] == "actions" for b in posted["blocks"])
    failures = [r for r in caplog.records if r.exc_info and "reference TR-" in r.getMessage()]
    assert len([r for r in failures if "buttons" in r.getMessage()]) == 1
    assert "Do I need a licence?" not in caplog.text
