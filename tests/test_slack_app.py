"""The Bolt app over real HTTP: signed Slack payloads in, calls to a fake Slack Web API out."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from slack_sdk import WebClient
from slack_sdk.http_retry import (
    ConnectionErrorRetryHandler,
    FixedValueRetryIntervalCalculator,
    RateLimitErrorRetryHandler,
)

from bot.answer import QuestionError
from bot.records import AnswerStatus, Citation, Confidence, Passage
from bot.slack import answers_render as render
from bot.slack.app import ServerErrorRetryHandler, build_retry_handlers, create_app
from bot.state import StateStore
from tests.fake_slack import BOT_USER_ID, FakeSlack
from tests.slack_harness import (
    CHANNEL,
    DM,
    USER,
    AppServer,
    FakeAnswerer,
    all_text,
    assert_within_slack_limits,
    block_actions,
    bot_message_event,
    deleted_event,
    dm_event,
    edited_event,
    envelope,
    home_opened_event,
    make_answer,
    make_config,
    mention_event,
    message_event,
    stored_value,
    user_bot_message_event,
    view_submission,
)


@pytest.fixture
def make_server(fake, tmp_path):
    servers: list[AppServer] = []

    def start(answerer=None, store=None, **slack) -> AppServer:
        server = AppServer(
            make_config(fake.api_url, tmp_path, **slack), answerer or FakeAnswerer(), fake, store
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def answerer():
    return FakeAnswerer()


@pytest.fixture
def server(make_server, answerer):
    return make_server(answerer)


def _no_unsafe_options(fake: FakeSlack) -> None:
    for call in fake.calls:
        assert "link_names" not in call.body and "parse" not in call.body, call


# -- where it answers ------------------------------------------------------------------------


def test_mention_is_answered_in_its_thread_with_progress_reaction(server, fake, answerer):
    event = mention_event("Do I need an export licence?")
    result = server.post_event(event)
    assert result.status == 200
    reply = fake.wait_for("chat.postMessage")[0].body
    assert reply["channel"] == CHANNEL and reply["thread_ts"] == event["ts"]
    assert reply["unfurl_links"] is False and reply["unfurl_media"] is False
    assert "*[1]*" in all_text(reply)
    assert answerer.calls == [("Do I need an export licence?", None)]
    server.settle()
    methods = [m for m in fake.methods() if m != "auth.test"]
    assert methods == ["reactions.add", "chat.postMessage", "reactions.remove"]
    reaction = fake.calls_to("reactions.add")[0].body
    assert (reaction["channel"], reaction["timestamp"], reaction["name"]) == (
        CHANNEL,
        event["ts"],
        "hourglass_flowing_sand",
    )
    _no_unsafe_options(fake)


def test_direct_message_is_answered_in_the_dm(server, fake, answerer):
    server.post_event(dm_event("What is dual-use?"))
    reply = fake.wait_for("chat.postMessage")[0].body
    assert reply["channel"] == DM and "thread_ts" not in reply
    assert answerer.calls == [("What is dual-use?", None)]


def test_thread_follow_up_is_answered_with_the_earlier_question_as_context(server, fake, answerer):
    question = mention_event("Do I need an export licence for software?")
    server.post_event(question)
    fake.wait_for("chat.postMessage")
    server.settle()
    server.post_event(message_event("what about China?", thread_ts=question["ts"]))
    replies = fake.wait_for("chat.postMessage", 2)
    assert replies[1].body["thread_ts"] == question["ts"]
    assert answerer.calls[1] == ("what about China?", "Do I need an export licence for software?")
    server.post_event(message_event("a chat in someone else's thread", thread_ts="1700000000.000001"))
    server.settle()
    assert len(fake.calls_to("chat.postMessage")) == 2


def test_dm_thread_on_an_answer_is_a_follow_up(server, fake, answerer):
    server.post_event(dm_event("Can I take my laptop abroad?"))
    answer_ts = fake.wait_for("chat.postMessage")[0].reply["ts"]
    server.settle()
    server.post_event(dm_event("and to China?", thread_ts=answer_ts))
    second = fake.wait_for("chat.postMessage", 2)[1].body
    assert second["thread_ts"] == answer_ts
    assert answerer.calls[1] == ("and to China?", "Can I take my laptop abroad?")


def test_mention_delivered_also_as_a_message_is_answered_once(make_server, fake, answerer):
    server = make_server(answerer, channels={CHANNEL: {"mode": "all"}})
    mention = mention_event("Is there an academic exemption?")
    as_message = message_event(mention["text"]) | {"ts": mention["ts"], "event_ts": mention["ts"]}
    server.post_event(mention)
    server.post_event(as_message)
    fake.wait_for("chat.postMessage")
    server.settle()
    assert len(fake.calls_to("chat.postMessage")) == 1 and len(answerer.calls) == 1


def test_all_channel_answers_questions_but_not_off_topic_chatter(make_server, fake):
    def reply(question, context):
        status = AnswerStatus.OFF_TOPIC if "lunch" in question else AnswerStatus.ANSWERED
        return make_answer(question, status=status)

    server = make_server(FakeAnswerer(reply), channels={"C0ALL": {"mode": "all"}})
    server.post_event(message_event("Anyone for lunch?", channel="C0ALL"))
    server.post_event(message_event("Do visiting researchers need vetting?", channel="C0ALL"))
    server.post_event(message_event("Do visiting researchers need vetting?", channel="C0MENTIONONLY"))
    server.settle()
    replies = fake.calls_to("chat.postMessage")
    assert len(replies) == 1 and replies[0].body["channel"] == "C0ALL"


def test_off_channel_mention_gets_a_private_hint_and_no_answer(make_server, fake, answerer):
    server = make_server(answerer, channels={"C0OFF": {"mode": "off"}})
    server.post_event(mention_event("Do I need a licence?", channel="C0OFF"))
    hint = fake.wait_for("chat.postEphemeral")[0].body
    server.settle()
    assert hint["user"] == USER and "direct message" in hint["text"] and "/trusted-research" in hint["text"]
    assert answerer.calls == [] and fake.calls_to("chat.postMessage") == []


def test_private_channel_replies_ephemerally_with_a_share_button(make_server, fake):
    server = make_server(channels={"C0PRIV": {"mode": "mention", "visibility": "private"}})
    event = mention_event("Do I need a licence?", channel="C0PRIV")
    server.post_event(event)
    reply = fake.wait_for("chat.postEphemeral")[0].body
    assert reply["user"] == USER and reply["thread_ts"] == event["ts"]
    assert render.ACTION_SHARE in all_text(reply)
    server.settle()
    assert fake.calls_to("chat.postMessage") == []


def test_home_tab_is_published(server, fake):
    server.post_event(home_opened_event())
    published = fake.wait_for("views.publish")[0].body
    assert published["user_id"] == USER and published["view"]["type"] == "home"
    assert "Research Security Team" in all_text(published)
    server.post_event(home_opened_event(tab="messages"))
    server.settle()
    assert len(fake.calls_to("views.publish")) == 1


# -- behaving well ---------------------------------------------------------------------------


def test_forged_signature_and_stale_timestamp_get_401_and_no_reply(server, fake, answerer):
    assert server.post_json(envelope(dm_event("q")), secret="not-the-secret").status == 401
    stale = int(time.time()) - 10 * 60
    assert server.post_json(envelope(dm_event("q")), timestamp=stale).status == 401
    assert server.post_form({"payload": "{}"}, secret="forged").status == 401
    server.settle()
    assert fake.calls == [] and answerer.calls == []


def test_retried_event_gets_exactly_one_reply(server, fake, answerer):
    event = mention_event("Do I need a licence?")
    statuses = [server.post_event(event, event_id="Ev0RETRY", retry_num=n).status for n in (None, 1, 2, 3)]
    assert statuses == [200, 200, 200, 200]
    server.settle()
    assert len(fake.calls_to("chat.postMessage")) == 1 and len(answerer.calls) == 1


def test_event_dedupe_holds_across_a_restart(make_server, fake, answerer):
    first = make_server(answerer)
    first.post_event(dm_event("q"), event_id="Ev0RESTART")
    fake.wait_for("chat.postMessage")
    first.stop()
    second = make_server(answerer)  # new app and store, same database file
    second.post_event(dm_event("q"), event_id="Ev0RESTART", retry_num=1)
    second.settle()
    assert len(fake.calls_to("chat.postMessage")) == 1


def test_bots_edits_deletions_and_own_messages_are_ignored(server, fake, answerer):
    for event in (
        bot_message_event("I am a bot"),
        user_bot_message_event("I am another app's bot user"),
        edited_event("edited question?"),
        deleted_event(),
        dm_event("my own message") | {"user": BOT_USER_ID},
        dm_event("joined") | {"subtype": "channel_join"},
    ):
        assert server.post_event(event).status == 200
    server.settle()
    assert answerer.calls == [] and fake.calls_to("chat.postMessage") == []


def test_ack_is_immediate_even_when_the_answer_is_slow(make_server, fake):
    def slow(question, context):
        time.sleep(0.6)
        return make_answer(question)

    server = make_server(FakeAnswerer(slow))
    result = server.post_event(dm_event("slow question"))
    assert result.status == 200 and result.seconds < 0.3
    command = server.post_command("slow question")
    assert command.status == 200 and command.seconds < 0.3
    fake.wait_for("chat.postMessage")


def test_rate_limited_reply_is_retried_after_retry_after(server, fake):
    fake.fail_next("chat.postMessage", 1, status=429, retry_after="0")
    server.post_event(dm_event("q"))
    fake.wait_for("chat.postMessage", timeout=5)
    attempts = [c for c in fake.calls if c.method == "chat.postMessage"]
    assert [c.status for c in attempts] == [429, 200]


def test_internal_error_gives_an_apology_with_a_logged_reference(make_server, fake, caplog):
    def broken(question, context):
        raise RuntimeError("index exploded")

    server = make_server(FakeAnswerer(broken))
    with caplog.at_level(logging.ERROR, logger="bot.slack.answers"):
        server.post_event(mention_event("q"))
        reply = fake.wait_for("chat.postMessage")[0].body
        server.settle()
    reference = re.search(r"TR-[0-9A-F]{8}", reply["text"]).group(0)
    assert "Sorry" in reply["text"] and reply["thread_ts"]
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and logged[0].exc_info and "index exploded" in str(logged[0].exc_info[1])
    fake.wait_for("reactions.remove")  # progress is cleared on failure too (its failure names the calls seen)


def test_question_error_message_is_shown_to_the_user(make_server, fake):
    def refuse(question, context):
        raise QuestionError("Please keep it under 1000 characters <really>.")

    server = make_server(FakeAnswerer(refuse))
    server.post_event(dm_event("x" * 2000))
    reply = fake.wait_for("chat.postMessage")[0].body
    assert reply["text"] == "Please keep it under 1000 characters &lt;really&gt;."


def test_channel_pings_in_a_question_come_out_escaped(make_server, fake):
    def echo(question, context):
        answer = make_answer(question, status=AnswerStatus.NOT_COVERED)
        return answer.__class__(**{**answer.__dict__, "message": f"Nothing on: {question}"})

    server = make_server(FakeAnswerer(echo))
    server.post_event(mention_event("<!channel> <!here> does &lt;b&gt; &amp; this ping?"))
    server.post_command("<!everyone> ping?")
    reply = fake.wait_for("chat.postMessage")[0].body
    private = fake.wait_for("response_url")[0].body
    server.settle()
    for body in (reply, private):
        text = all_text(body)
        assert "<!channel>" not in text and "<!here>" not in text and "<!everyone>" not in text
    assert "&lt;!channel&gt; &lt;!here&gt; does &lt;b&gt; &amp;amp; this ping?" not in all_text(reply)
    assert "&lt;!channel&gt; &lt;!here&gt; does &lt;b&gt; &amp; this ping?" in all_text(reply)
    _no_unsafe_options(fake)


def test_a_very_long_answer_is_posted_within_slack_limits(make_server, fake):
    def huge(question, context):
        text = "Controlled <technology> & software. " * 500
        passages = tuple(Passage(n, f"doc#{n}", text, (text[:80],), 0.5) for n in range(1, 70))
        citations = tuple(
            Citation(n, "Title " * 40, "Sec " * 40, "https://x.ac.uk/" + "p" * 500, "d.md", None)
            for n in range(1, 70)
        )
        base = make_answer(question)
        return base.__class__(
            question, AnswerStatus.ANSWERED, Confidence.MEDIUM, passages, citations, base.contact, "Long."
        )

    server = make_server(FakeAnswerer(huge))
    server.post_event(mention_event("q" * 900))
    reply = fake.wait_for("chat.postMessage")[0].body
    assert_within_slack_limits(reply["blocks"])


# -- slash command, share, feedback ----------------------------------------------------------


def test_slash_command_gives_a_private_answer_that_can_be_shared(server, fake, answerer):
    result = server.post_command("Do I need a licence?")
    assert result.status == 200 and "Looking that up" in result.body
    private = fake.wait_for("response_url")[0].body
    assert private["response_type"] == "ephemeral" and "You asked: _Do I need a licence?_" in all_text(
        private
    )
    share = next(
        e
        for b in private["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == render.ACTION_SHARE
    )
    payload = block_actions(render.ACTION_SHARE, share["value"], fake.response_url("share"), ephemeral=True)
    assert server.post_interaction(payload).status == 200
    shared = fake.wait_for("chat.postMessage")[0].body
    assert shared["channel"] == CHANNEL and f"<@{USER}> shared an answer" in all_text(shared)
    assert render.ACTION_SHARE not in all_text(shared)
    fake.wait_for("response_url", 2)  # the handler queues the deletion after the share is posted
    server.settle()
    assert {"delete_original": True} in [c.body for c in fake.calls_to("response_url")]
    assert [q for q, _ in answerer.calls] == ["Do I need a licence?"]  # the stored answer, not a new one


def test_share_falls_back_to_the_response_url_when_the_bot_is_not_in_the_channel(server, fake):
    value = stored_value(server.store, "q")
    fake.error_next("chat.postMessage", "not_in_channel")
    server.post_interaction(
        block_actions(render.ACTION_SHARE, value, fake.response_url("share"), ephemeral=True)
    )
    server.settle()
    bodies = [c.body for c in fake.calls_to("response_url")]
    assert bodies[0]["response_type"] == "in_channel" and bodies[1] == {"delete_original": True}


def test_empty_slash_command_gets_usage_help(server, fake, answerer):
    result = server.post_command("   ")
    assert result.status == 200 and "/trusted-research" in result.body
    server.settle()
    assert answerer.calls == [] and fake.calls_to("response_url") == []


def test_helpful_feedback_is_stored_and_thanked(server, fake):
    value = stored_value(server.store, "Do I need a licence?")
    server.post_interaction(block_actions(render.ACTION_HELPFUL, value, fake.response_url("fb")))
    thanks = fake.wait_for("response_url")[0].body
    server.settle()
    assert "Thanks" in thanks["text"] and thanks["response_type"] == "ephemeral"
    [row] = server.store.list_feedback()
    assert (row.user, row.channel, row.question, row.chunk_ids, row.helpful) == (
        USER,
        CHANNEL,
        "Do I need a licence?",
        ("export-controls.md#1", "export-controls.md#2"),
        True,
    )


def test_not_helpful_opens_a_modal_and_stores_the_reason(server, fake):
    value = stored_value(server.store, "q", passages=1)
    payload = block_actions(render.ACTION_NOT_HELPFUL, value, fake.response_url("fb"))
    server.post_interaction(payload)
    opened = fake.wait_for("views.open")[0].body
    assert opened["trigger_id"] == payload["trigger_id"]
    metadata = opened["view"]["private_metadata"]
    result = server.post_interaction(
        view_submission(render.VIEW_FEEDBACK, metadata, "It missed the US rules")
    )
    assert result.status == 200 and result.json()["response_action"] == "update"
    [row] = server.store.list_feedback()
    assert row.helpful is False and row.reason == "It missed the US rules"
    assert row.chunk_ids == ("export-controls.md#1",)


def test_url_verification_challenge_is_answered(server):
    result = server.post_json({"token": "t", "challenge": "abc123", "type": "url_verification"})
    assert result.status == 200 and "abc123" in result.body


# -- the client ------------------------------------------------------------------------------


def test_a_given_client_gets_the_token_and_retry_handlers(fake, tmp_path, answerer):
    config = make_config(fake.api_url, tmp_path, max_retries=5)
    client = WebClient(base_url=fake.api_url)
    app = create_app(
        config,
        answerer,
        StateStore(config.paths.state_db),
        client=client,
        token="xoxb-test",
        signing_secret="secret",
        token_verification_enabled=False,
    )
    kinds = {type(handler): handler.max_retry_count for handler in app.client.retry_handlers}
    assert kinds == {
        RateLimitErrorRetryHandler: 5,
        ConnectionErrorRetryHandler: 5,
        ServerErrorRetryHandler: 5,
    }
    assert app.client.token == "xoxb-test" and app.client.base_url == fake.api_url


def test_server_errors_are_retried(fake):
    handlers = build_retry_handlers(2, FixedValueRetryIntervalCalculator(0))
    client = WebClient(token="xoxb-test", base_url=fake.api_url, retry_handlers=handlers)
    fake.fail_next("chat.postMessage", 2, status=502)
    assert client.chat_postMessage(channel="C1", text="hi")["ok"] is True
    assert [c.status for c in fake.calls if c.method == "chat.postMessage"] == [502, 502, 200]


def test_base_url_comes_from_config(fake, tmp_path, answerer):
    config = make_config(fake.url + "/api", tmp_path)  # no trailing slash: still works
    app = create_app(
        config,
        answerer,
        StateStore(config.paths.state_db),
        token="xoxb-test",
        signing_secret="secret",
        token_verification_enabled=False,
    )
    assert app.client.base_url == fake.api_url
    app.client.auth_test()
    assert fake.methods() == ["auth.test"]


@pytest.mark.model
def test_end_to_end_with_the_real_answerer(make_server, fake, real_answerer):
    server = make_server(real_answerer)
    event = mention_event("Who needs an ATAS certificate?")
    server.post_event(event)
    reply = fake.wait_for("chat.postMessage", timeout=30)[0].body
    assert reply["thread_ts"] == event["ts"]
    assert "*[1]*" in all_text(reply) and "ATAS" in all_text(reply)
    assert_within_slack_limits(reply["blocks"])
    server.settle()
    server.post_event(message_event("and how long does it take?", thread_ts=event["ts"]))
    second = fake.wait_for("chat.postMessage", 2, timeout=30)[1].body
    assert "*[1]*" in all_text(second)


# -- when the bot speaks (bot.addressing) ------------------------------------------------------


def test_thread_chatter_gets_no_reply_and_no_reaction_but_questions_do(server, fake, answerer):
    question = mention_event("Do I need an export licence for software?")
    server.post_event(question)
    fake.wait_for("chat.postMessage")
    server.settle()
    fake.clear()
    thread = question["ts"]
    for text, user in (
        ("thanks", USER),
        ("ok", USER),
        ("lol", "U0SOMEONE"),
        ("<@U0DAVE> can you book the room for Friday?", USER),
        ("what about the encryption software though?", "U0SOMEONE"),  # not the asker, no mention
    ):
        assert server.post_event(message_event(text, user=user, thread_ts=thread)).status == 200
    server.settle()
    assert _sent(fake) == [] and len(answerer.calls) == 1
    server.post_event(message_event("what about China?", thread_ts=thread))
    reply = fake.wait_for("chat.postMessage")[0].body
    assert reply["thread_ts"] == thread
    assert answerer.calls[1] == ("what about China?", "Do I need an export licence for software?")


def test_all_channel_chatter_gets_no_reply_and_no_reaction(make_server, fake):
    def reply(question, context):
        covered = "licence" in question
        return make_answer(question, status=AnswerStatus.ANSWERED if covered else AnswerStatus.NOT_COVERED)

    answerer = FakeAnswerer(reply)
    server = make_server(answerer, channels={"C0ALL": {"mode": "all"}})
    for text in (
        "Congrats to Priya on the new grant!",
        "the seminar is moved to room 2.14",
        "Do overseas partners need vetting?",  # a research-security question the guidance doesn't cover
    ):
        server.post_event(message_event(text, channel="C0ALL"))
    server.settle()
    assert _sent(fake) == []  # no reply, no "doesn't cover this", no hourglass
    assert [q for q, _ in answerer.calls] == ["Do overseas partners need vetting?"]
    server.post_event(message_event("Do I need an export licence to ship this to China?", channel="C0ALL"))
    fake.wait_for("chat.postMessage")
    server.settle()
    assert "reactions.add" not in fake.methods()


def _sent(fake: FakeSlack) -> list[str]:
    return [method for method in fake.methods() if method != "auth.test"]


# -- share and feedback act on what was answered -------------------------------------------------


def _private_answer(server: AppServer, fake: FakeSlack, question: str = "Do I need a licence?") -> str:
    server.post_command(question)
    private = fake.wait_for("response_url")[0].body
    server.settle()
    fake.clear()
    return next(
        e["value"]
        for b in private["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == render.ACTION_SHARE
    )


def test_button_values_carry_only_the_answer_id(server, fake):
    value = _private_answer(server, fake)
    assert set(json.loads(value)) == {"a"} and len(value) < 40 and "licence" not in value


def test_only_the_asker_can_share(server, fake):
    value = _private_answer(server, fake)
    payload = block_actions(render.ACTION_SHARE, value, fake.response_url("s"), ephemeral=True)
    payload["user"] = payload["user"] | {"id": "U0INTRUDER"}
    server.post_interaction(payload)
    server.settle()
    assert fake.calls_to("chat.postMessage") == []
    [note] = [c.body for c in fake.calls_to("response_url")]
    assert "Only the person who asked" in note["text"] and note["response_type"] == "ephemeral"


def test_no_sharing_into_an_off_channel_or_another_channel(make_server, fake):
    server = make_server(channels={"C0OFF": {"mode": "off"}})
    value = stored_value(server.store, "q", channel="C0OFF")
    server.post_interaction(
        block_actions(render.ACTION_SHARE, value, fake.response_url("s"), channel="C0OFF")
    )
    elsewhere = stored_value(server.store, "q", channel=CHANNEL)
    server.post_interaction(
        block_actions(render.ACTION_SHARE, elsewhere, fake.response_url("s"), channel="C0X")
    )
    server.settle()
    assert fake.calls_to("chat.postMessage") == []
    notes = [c.body["text"] for c in fake.calls_to("response_url")]
    assert any("turned off in this channel" in n for n in notes) and any(
        "where it was asked" in n for n in notes
    )


def test_share_posts_the_stored_answer_into_its_own_thread(make_server, fake, answerer):
    server = make_server(answerer, channels={"C0PRIV": {"visibility": "private"}})
    event = mention_event("Do I need a licence?", channel="C0PRIV")
    server.post_event(event)
    private = fake.wait_for("chat.postEphemeral")[0].body
    server.settle()
    value = next(e["value"] for b in private["blocks"] if b["type"] == "actions" for e in b["elements"])
    server.post_interaction(
        block_actions(render.ACTION_SHARE, value, fake.response_url("s"), channel="C0PRIV")
    )
    shared = fake.wait_for("chat.postMessage")[0].body
    assert shared["thread_ts"] == event["ts"] and shared["channel"] == "C0PRIV"
    assert len(answerer.calls) == 1 and not any(b["type"] == "actions" for b in shared["blocks"])


def test_forged_button_values_store_nothing_from_the_payload(server, fake):
    forged = json.dumps({"q": "x" * 100_000, "c": "abc", "a": "no-such-answer"})
    server.post_interaction(block_actions(render.ACTION_HELPFUL, forged, fake.response_url("fb")))
    server.post_interaction(
        block_actions(render.ACTION_SHARE, forged, fake.response_url("s"), ephemeral=True)
    )
    server.settle()
    assert server.store.list_feedback() == [] and fake.calls_to("chat.postMessage") == []
    assert all("no longer have that answer" in c.body["text"] for c in fake.calls_to("response_url"))


def test_echoed_questions_carry_none_of_the_askers_formatting(server, fake):
    server.post_command("*bold* _it_ ~gone~ `code` ```fence``` <!here>")
    echo = fake.wait_for("response_url")[0].body["blocks"][0]["elements"][0]["text"]
    server.settle()
    asked = echo.removeprefix("You asked: _").removesuffix("_")
    assert not set("*_~`") & set(asked) and "<!here>" not in asked
