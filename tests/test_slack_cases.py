"""Cases in Slack over real HTTP and the fake Slack Web API: escalation, the card, its buttons and
modals, /trcase, App Home, "Talk to a person", refusals, and delivery through a Slack outage."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import pytest

from bot.cases import card_key
from bot.config import CaseSettings, ChannelSettings, OutboxSettings
from bot.slack import answers_render
from bot.slack import cases_render as render
from bot.triggers import RuleMatch, Triage
from tests.fake_slack import FakeSlack
from tests.slack_harness import (
    CHANNEL,
    DM,
    USER,
    AppServer,
    FakeAnswerer,
    all_text,
    assert_within_slack_limits,
    block_actions,
    command_form,
    dm_event,
    home_opened_event,
    make_config,
    mention_event,
    message_event,
    view_submission,
)

TEAM = "G0SECURITY"
OFFICER = "U0OFFICER"
GROUPIE = "U0GROUPIE"
QUESTION = "Can I send our drone autopilot code to a lab in Tehran? <!channel>"


class FakeTriager:
    """Escalates questions naming a drone (high) or a talent programme (medium)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def triage(self, question: str, vector=None) -> Triage:
        self.calls.append(question)
        matches = []
        if "drone" in question.lower():
            matches.append(
                RuleMatch("military_end_use", "high", "Military or WMD end use", "mentions 'drone'", "g.md")
            )
        if "thousand talents" in question.lower():
            matches.append(RuleMatch("talent_programme", "medium", "Talent programmes", "names one", "g.md"))
        return Triage(bool(matches), matches[0].severity if matches else None, tuple(matches))


@pytest.fixture
def fake():
    with FakeSlack() as fake:
        fake.usergroups["S0TEAM"] = [GROUPIE]
        fake.channels[TEAM] = {"is_private": True, "is_member": True}
        yield fake


@pytest.fixture
def config(fake, tmp_path):
    config = make_config(fake.api_url, tmp_path)
    cases = CaseSettings(enabled=True, channel=TEAM, team_users=(OFFICER,), team_usergroup="S0TEAM")
    fast = OutboxSettings(backoff_initial_seconds=0.05, backoff_max_seconds=0.2, backoff_jitter=0.0)
    return replace(config, cases=cases, outbox=fast)


@pytest.fixture
def make_server(fake, config):
    servers: list[AppServer] = []

    def start(config=config, **options) -> AppServer:
        options.setdefault("triager", FakeTriager())
        server = AppServer(config, FakeAnswerer(), fake, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        try:
            server.stop()
        except Exception:
            pass


@pytest.fixture
def server(make_server):
    return make_server()


def store_of(server: AppServer):
    return server.deps.cases.store


def cards(fake: FakeSlack) -> list:
    return [
        c
        for c in fake.calls_to("chat.postMessage")
        if c.body["channel"] == TEAM and not c.body.get("thread_ts")
    ]


def card_thread(fake: FakeSlack, card_ts: str) -> list[str]:
    calls = fake.calls_to("chat.postMessage")
    return [c.body["text"] for c in calls if c.body["channel"] == TEAM and c.body.get("thread_ts") == card_ts]


def escalate(server: AppServer, fake: FakeSlack, text: str = QUESTION, **event_options):
    event = mention_event(text, **event_options)
    assert server.post_event(event).status == 200
    fake.wait_for("chat.postMessage", 2)
    server.settle()
    [case] = [c for c in store_of(server).list() if c.message_ts == event["ts"]]
    return event, case


def click(server, fake, action_id, value, *, user=OFFICER, channel=TEAM, message_ts=None):
    """Click a button; a case reference as ``value`` is a case button's value."""
    if value.startswith("RS-"):
        value = render.case_value(value)
    payload = block_actions(action_id, value, fake.response_url(f"click-{action_id}"), channel=channel)
    payload["user"]["id"] = user
    if message_ts:
        payload["container"]["message_ts"] = message_ts
        payload["message"]["ts"] = message_ts
    result = server.post_interaction(payload)
    server.settle()
    return result


def submit(server, callback_id, ref, values, *, user=OFFICER):
    payload = view_submission(callback_id, ref, None, user=user)
    payload["view"]["state"]["values"] = values
    return server.post_interaction(payload)


# -- escalation ------------------------------------------------------------------------------


def test_a_trigger_gives_a_case_a_card_and_a_calm_notice_and_the_answer_is_still_given(server, fake):
    event, case = escalate(server, fake)
    assert (case.source, case.severity, case.requester, case.channel) == ("trigger", "high", USER, CHANNEL)
    assert case.thread_ts == event["ts"] and case.rule_ids == ("military_end_use",)
    assert case.permalink == f"https://fake.slack.test/archives/{CHANNEL}/p{event['ts'].replace('.', '')}"
    [card] = cards(fake)
    text = all_text(card.body)
    assert case.ref in text and "high severity" in text and "Military or WMD end use" in text
    assert "mentions 'drone'" in text and f"<@{USER}>" in text and case.permalink in text
    assert "drone autopilot code" in text and "&lt;!channel&gt;" in text and "<!channel>" not in text
    assert_within_slack_limits(card.body["blocks"])
    answer = [c for c in fake.calls_to("chat.postMessage") if c.body["channel"] == CHANNEL]
    assert len(answer) == 1 and answer[0].body["thread_ts"] == event["ts"]  # the guidance answer
    assert "RS-" not in all_text(answer[0].body)
    [notice] = fake.wait_for("chat.postEphemeral", 1)  # it waits for the answer, so it can come last
    fake.wait_for("chat.postMessage", 3)
    dm = [c for c in fake.calls_to("chat.postMessage") if c.body["channel"] == USER]
    assert notice.body["user"] == USER and notice.body["thread_ts"] == event["ts"]
    for message in (notice.body, dm[0].body):
        said = all_text(message)
        assert case.ref in said and "drone" not in said and "Military" not in said and "Tehran" not in said
    assert answer[0].at < notice.at  # the notice follows the answer
    entries = [e.action for e in store_of(server).audit(case.ref)]
    assert entries[0] == "created" and entries.count("notification_queued") == 3
    assert store_of(server).sync_notifications() >= 0
    sent = [e for e in store_of(server).audit(case.ref) if e.action == "notification_sent"]
    assert {e.detail["message"] for e in sent} == {
        card_key(case.ref),
        f"case-notice:{case.ref}",
        f"case-notice-dm:{case.ref}",
    }


def test_a_question_that_matches_nothing_opens_no_case(server, fake):
    server.post_event(mention_event("What is the Entity List?"))
    fake.wait_for("chat.postMessage")
    server.settle()
    assert store_of(server).list() == [] and cards(fake) == []


def test_a_dm_gets_the_notice_in_the_dm(server, fake):
    event = dm_event("Is a Thousand Talents offer a problem for my grant?")
    server.post_event(event)
    fake.wait_for("chat.postMessage", 3)
    server.settle()
    [case] = store_of(server).list()
    assert case.severity == "medium" and case.channel == DM
    notices = [
        c
        for c in fake.calls_to("chat.postMessage")
        if c.body["channel"] == DM and case.ref in all_text(c.body)
    ]
    assert len(notices) == 1 and fake.calls_to("chat.postEphemeral") == []
    assert "in a direct message" in all_text(cards(fake)[0].body)


def test_a_retried_event_gives_one_case_and_one_card(make_server, fake, config):
    all_channel = replace(config.slack, channels={CHANNEL: ChannelSettings(mode="all")})
    server = make_server(replace(config, slack=all_channel))
    event = mention_event(QUESTION)
    for retry in (None, 1, 2):
        server.post_event(event, event_id="Ev0SAME", retry_num=retry)
    server.post_event(event, event_id="Ev0REDELIVERED")  # the same message again, another event id
    as_message = message_event(event["text"]) | {"ts": event["ts"], "event_ts": event["ts"]}
    server.post_event(as_message)  # an "all" channel also gets it as a message
    fake.wait_for("chat.postMessage", 2)
    server.settle()
    assert len(store_of(server).list()) == 1 and len(cards(fake)) == 1


def test_an_event_redone_after_a_crash_gives_no_second_case(server, fake):
    from bot.slack import cases as cases_slack

    event = {"question": QUESTION, "channel": CHANNEL, "user": USER, "thread_ts": "1.1", "message_ts": "1.1"}
    first = cases_slack.escalate_question(server.deps, server.app.client, **event)
    again = cases_slack.escalate_question(server.deps, server.app.client, **event)
    assert first.outcome == "opened" and again.outcome == "duplicate" and again.case.ref == first.case.ref
    server.settle()
    assert len(cards(fake)) == 1


def test_a_follow_up_in_the_thread_adds_to_the_open_case(server, fake):
    event, case = escalate(server, fake)
    card_ts = cards(fake)[0].reply["ts"]
    server.post_event(message_event("and if we only send the binaries?", thread_ts=event["ts"]))
    fake.wait_for("chat.postMessage", 5)
    server.settle()
    assert [c.ref for c in store_of(server).list()] == [case.ref]
    assert any("and if we only send the binaries?" in text for text in card_thread(fake, card_ts))
    assert [e.action for e in store_of(server).audit(case.ref)].count("follow_up") == 1
    assert len(cards(fake)) == 1 and len(fake.calls_to("chat.postEphemeral")) == 1  # no second notice


def test_the_same_concern_again_joins_the_open_case(server, fake):
    _, case = escalate(server, fake)
    server.post_event(dm_event("drone parts for Tehran, again: can I ship them?"))
    fake.wait_for("chat.postMessage", 6)
    server.settle()
    assert [c.ref for c in store_of(server).list()] == [case.ref]
    joined = [
        c
        for c in fake.calls_to("chat.postMessage")
        if c.body["channel"] == DM and case.ref in all_text(c.body)
    ]
    assert joined and "added this to your open case" in all_text(joined[0].body)


# -- the team works the case -----------------------------------------------------------------


def test_a_team_members_click_changes_the_status_and_updates_the_card_in_place(server, fake):
    _, case = escalate(server, fake)
    card_ts = cards(fake)[0].reply["ts"]
    assert click(server, fake, render.ACTION_ACKNOWLEDGE, case.ref, message_ts=card_ts).status == 200
    fake.wait_for("chat.update")
    server.settle()
    assert store_of(server).get(case.ref).status == "acknowledged"
    update = fake.calls_to("chat.update")[-1].body
    assert update["channel"] == TEAM and update["ts"] == card_ts
    assert "Acknowledged" in all_text(update) and render.ACTION_ACKNOWLEDGE not in json.dumps(
        update["blocks"]
    )
    assert any(f"<@{OFFICER}> acknowledged the case" in text for text in card_thread(fake, card_ts))
    click(
        server, fake, render.ACTION_ASSIGN, case.ref, user=GROUPIE, message_ts=card_ts
    )  # via the user group
    fake.wait_for("chat.update", 2)
    server.settle()
    assert store_of(server).get(case.ref).assignee == GROUPIE
    assert f"<@{GROUPIE}>" in all_text(fake.calls_to("chat.update")[-1].body)


def test_a_non_members_click_is_refused_and_logged_and_the_case_is_unchanged(server, fake):
    _, case = escalate(server, fake)
    before = store_of(server).get(case.ref)
    click(server, fake, render.ACTION_ACKNOWLEDGE, case.ref, user="U0NOSY")
    reply = fake.wait_for("response_url")[-1].body
    assert "only the research-security team" in reply["text"] and reply["response_type"] == "ephemeral"
    assert store_of(server).get(case.ref) == before
    refused = store_of(server).audit(case.ref)[-1]
    assert (refused.action, refused.actor, refused.detail["attempted"]) == (
        "refused",
        "U0NOSY",
        "acknowledge",
    )
    assert fake.calls_to("chat.update") == []


def test_an_action_the_workflow_refuses_says_why(server, fake):
    _, case = escalate(server, fake)
    click(server, fake, render.ACTION_REOPEN, case.ref)
    reply = fake.wait_for("response_url")[-1].body
    assert "only a resolved or closed case can be reopened" in reply["text"]
    assert store_of(server).get(case.ref).status == "new"


def test_notes_and_resolving_go_through_modals(server, fake):
    _, case = escalate(server, fake)
    card_ts = cards(fake)[0].reply["ts"]
    click(server, fake, render.ACTION_NOTE, case.ref, message_ts=card_ts)
    modal = fake.wait_for("views.open")[-1].body["view"]
    assert modal["callback_id"] == render.VIEW_NOTE and modal["private_metadata"] == case.ref
    values = {
        render.NOTE_BLOCK: {render.NOTE_ACTION: {"type": "plain_text_input", "value": "Called <@U0X> & PI"}}
    }
    assert submit(server, render.VIEW_NOTE, case.ref, values).status == 200
    fake.wait_for("chat.update")
    server.settle()
    assert store_of(server).get(case.ref).latest_note == "Called <@U0X> & PI"
    assert "Called &lt;@U0X&gt; &amp; PI" in all_text(fake.calls_to("chat.update")[-1].body)
    click(server, fake, render.ACTION_RESOLVE, case.ref, message_ts=card_ts)
    modal = fake.wait_for("views.open", 2)[-1].body["view"]
    assert modal["callback_id"] == render.VIEW_RESOLVE
    outcome = modal["blocks"][0]["element"]["options"][5]["value"]
    empty = submit(server, render.VIEW_RESOLVE, case.ref, {render.OUTCOME_BLOCK: {render.OUTCOME_ACTION: {}}})
    assert empty.json()["response_action"] == "errors" and store_of(server).get(case.ref).status == "new"
    values = {
        render.OUTCOME_BLOCK: {
            render.OUTCOME_ACTION: {"type": "static_select", "selected_option": {"value": outcome}}
        },
        render.NOTE_BLOCK: {render.NOTE_ACTION: {"type": "plain_text_input", "value": None}},
    }
    assert submit(server, render.VIEW_RESOLVE, case.ref, values).status == 200
    fake.wait_for("chat.update", 2)
    server.settle()
    resolved = store_of(server).get(case.ref)
    assert resolved.status == "resolved" and resolved.outcome == outcome
    update = all_text(fake.calls_to("chat.update")[-1].body)
    assert "Resolved" in update and render.ACTION_REOPEN in json.dumps(fake.calls_to("chat.update")[-1].body)
    assert any("resolved the case" in text for text in card_thread(fake, card_ts))


def test_a_non_member_cannot_submit_a_modal(server, fake):
    _, case = escalate(server, fake)
    values = {render.NOTE_BLOCK: {render.NOTE_ACTION: {"type": "plain_text_input", "value": "sneaky"}}}
    result = submit(server, render.VIEW_NOTE, case.ref, values, user="U0NOSY")
    assert result.json()["response_action"] == "errors"
    assert store_of(server).get(case.ref).latest_note is None
    assert store_of(server).audit(case.ref)[-1].action == "refused"


# -- the team's views ------------------------------------------------------------------------


def trcase(server, fake, text, user=OFFICER) -> dict:
    """/trcase's (ephemeral) answer: its blocks and text (bolt sends a text-only answer as plain text)."""
    form = command_form(text, fake.response_url("trcase"), command="/trcase") | {"user_id": user}
    result = server.post_form(form)
    assert result.status == 200
    return result.json() if result.body.startswith("{") else {"text": result.body}


def test_trcase_list_show_and_mine(server, fake):
    _, case = escalate(server, fake)
    listed = trcase(server, fake, "list")
    assert case.ref in json.dumps(listed["blocks"]) and "Open cases" in listed["text"]
    shown = trcase(server, fake, f"show {case.ref.lower()}")
    assert "Timeline" in json.dumps(shown["blocks"]) and "drone autopilot" in json.dumps(shown["blocks"])
    assert_within_slack_limits(shown["blocks"])
    assert "No open cases are assigned to you" in json.dumps(trcase(server, fake, "mine"))
    assert "No case RS-2026-9999" in trcase(server, fake, "show RS-2026-9999")["text"]
    assert "/trcase list" in trcase(server, fake, "")["text"]


def test_trcase_is_refused_to_anyone_else_and_logged(server, fake):
    _, case = escalate(server, fake)
    reply = trcase(server, fake, f"show {case.ref}", user=USER)
    assert "only the research-security team" in reply["text"] and case.ref not in json.dumps(reply)
    refused = store_of(server).audit(case.ref)[-1]
    assert (refused.action, refused.actor, refused.detail["attempted"]) == ("refused", USER, "/trcase show")


def test_app_home_shows_team_members_the_open_cases_and_others_the_normal_home(server, fake):
    _, case = escalate(server, fake)
    server.post_event(home_opened_event(user=OFFICER))
    team_home = fake.wait_for("views.publish")[-1].body
    assert team_home["user_id"] == OFFICER and case.ref in all_text(team_home)
    assert "Research-security cases" in all_text(team_home) and "Example questions" in all_text(team_home)
    server.post_event(home_opened_event(user=USER))
    normal = fake.wait_for("views.publish", 2)[-1].body
    assert (
        normal["user_id"] == USER
        and case.ref not in all_text(normal)
        and "Example questions" in all_text(normal)
    )
    click(server, fake, render.ACTION_VIEW, case.ref, channel=DM)
    assert fake.wait_for("views.open")[-1].body["view"]["title"]["text"] == case.ref


# -- "Talk to a person" ----------------------------------------------------------------------


def talk_button(fake: FakeSlack) -> str:
    """The "Talk to a person" button's value on the (first) answer in CHANNEL."""
    fake.wait_for("chat.postMessage")
    [answer] = [c.body for c in fake.calls_to("chat.postMessage") if c.body["channel"] == CHANNEL][:1]
    buttons = [e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]]
    return next(e["value"] for e in buttons if e["action_id"] == answers_render.ACTION_TALK)


def test_talk_to_a_person_opens_a_case_even_when_no_rule_matched(server, fake):
    event = mention_event("Who approves my visitor?")
    server.post_event(event)
    value = talk_button(fake)
    server.settle()
    assert store_of(server).list() == []
    click(server, fake, answers_render.ACTION_TALK, value, user=USER, channel=CHANNEL)
    [case] = store_of(server).list()
    assert (case.source, case.severity, case.rules) == ("researcher-request", "medium", ())
    assert case.requester == USER
    assert case.thread_ts == event["ts"]
    confirm = fake.wait_for("response_url")[-1].body
    assert case.ref in confirm["text"] and "get in touch" in confirm["text"]
    assert "Who approves my visitor?" in all_text(cards(fake)[0].body)
    click(server, fake, answers_render.ACTION_TALK, value, user=USER, channel=CHANNEL)  # clicked again
    assert len(store_of(server).list()) == 1 and len(cards(fake)) == 1
    assert case.ref in fake.wait_for("response_url", 2)[-1].body["text"]


def test_talk_to_a_person_in_a_case_thread_joins_the_case(server, fake):
    _, case = escalate(server, fake)
    value = talk_button(fake)
    click(server, fake, answers_render.ACTION_TALK, value, user=USER, channel=CHANNEL)
    assert [c.ref for c in store_of(server).list()] == [case.ref]
    assert "researcher_request" in [e.action for e in store_of(server).audit(case.ref)]
    assert case.ref in fake.wait_for("response_url")[-1].body["text"]


def test_talk_to_a_person_without_cases_gives_the_contact(make_server, fake, config):
    server = make_server(replace(config, cases=CaseSettings()))
    server.post_event(mention_event("Who approves my visitor?"))
    click(server, fake, answers_render.ACTION_TALK, talk_button(fake), user=USER, channel=CHANNEL)
    reply = fake.wait_for("response_url")[-1].body
    assert "research-security@example.ac.uk" in reply["text"] and server.deps.cases is None


def test_every_answer_carries_the_talk_to_a_person_button(server, fake):
    server.post_event(mention_event("What is dual-use?"))
    reply = fake.wait_for("chat.postMessage")[0].body
    assert answers_render.ACTION_TALK in json.dumps(reply["blocks"])


# -- nothing lost ----------------------------------------------------------------------------


def settle_listeners(server: AppServer) -> None:
    """Wait for the listeners and the answering thread (not the outbox: Slack is down)."""
    server.executor.wait_idle()
    assert server.deps.work.wait_idle(10)


SENDING = ("chat.postMessage", "chat.postEphemeral", "chat.update", "chat.getPermalink", "reactions.add")


def test_slack_failing_during_an_escalation_keeps_the_case_and_the_card_comes_after_recovery(server, fake):
    fake.outage(503, methods=SENDING)
    event = mention_event(QUESTION)
    assert server.post_event(event).status == 200
    settle_listeners(server)
    [case] = store_of(server).list()  # written although nothing could be sent
    assert cards(fake) == []
    fake.recover()
    fake.wait_for("chat.postEphemeral", timeout=10)
    server.settle()
    assert len(cards(fake)) == 1 and case.ref in all_text(cards(fake)[0].body)


def test_the_card_is_delivered_after_recovery_across_a_restart(make_server, fake):
    first = make_server()
    fake.outage(503, methods=SENDING)
    first.post_event(mention_event(QUESTION))
    settle_listeners(first)
    [case] = store_of(first).list()
    first.stop()
    fake.recover()
    second = make_server()  # the bot restarted, same database
    fake.wait_for("chat.postEphemeral", timeout=10)
    second.settle()
    assert [c.ref for c in store_of(second).list()] == [case.ref]
    assert len(cards(fake)) == 1
    click(second, fake, render.ACTION_ACKNOWLEDGE, case.ref, message_ts=cards(fake)[0].reply["ts"])
    assert fake.wait_for("chat.update")[-1].body["ts"] == cards(fake)[0].reply["ts"]


def test_a_reminder_is_sent_once_across_a_restart(make_server, fake, config):
    server = make_server()
    _, case = escalate(server, fake)
    db = sqlite3.connect(config.paths.state_db)  # the case has waited since 2020
    db.execute("UPDATE cases SET status_since = '2020-01-01T00:00:00+00:00' WHERE ref = ?", [case.ref])
    db.commit()
    db.close()
    assert server.deps.cases.send_due_reminders() == 1
    server.settle()
    server.stop()
    again = make_server()
    assert again.deps.cases.send_due_reminders() == 0
    again.settle()
    reminders = [c for c in fake.calls_to("chat.postMessage") if c.body.get("reply_broadcast")]
    assert len(reminders) == 1 and case.ref in reminders[0].body["text"]
    assert reminders[0].body["thread_ts"] == cards(fake)[0].reply["ts"]


# -- start-up: settings, the channel, the manifest -------------------------------------------

BOT_TOKEN = "xoxb-1234-5678-abcdef"
APP_TOKEN = "xapp-1-A0TRBOT-1234-abcdef"


def test_serve_stops_before_loading_anything_when_cases_have_no_channel_or_team(config, monkeypatch):
    import bot.answer
    from bot.cases import CaseSettingsError
    from bot.slack import serve

    monkeypatch.setattr(bot.answer, "open_answerer", lambda config: pytest.fail("model loaded"))
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN}
    no_channel = replace(config, cases=replace(config.cases, channel=""))
    with pytest.raises(CaseSettingsError, match="cases.channel is empty"):
        serve.serve(no_channel, env=env)
    no_team = replace(config, cases=replace(config.cases, team_users=(), team_usergroup=""))
    with pytest.raises(CaseSettingsError, match="no team"):
        serve.serve(no_team, env=env)


def test_trbot_serve_says_so_in_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bot.cli import attach_slack_commands, cli

    settings = tmp_path / "app.yml"
    settings.write_text("cases:\n  enabled: true\n  team_users: [U0OFFICER]\n")
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    attach_slack_commands()
    result = CliRunner().invoke(cli, ["--config", str(settings), "serve"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: cases.enabled is true but cases.channel is empty")


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ({"is_private": True, "is_member": False}, "the bot is not a member of cases.channel G0SECURITY"),
        ({"is_private": False, "is_member": True}, "is a public channel"),
        ({"is_private": True, "is_member": True, "is_archived": True}, "is archived"),
        (None, "was not found \\(channel_not_found\\).*invite the bot"),
    ],
)
def test_serve_checks_the_team_channel(fake, config, channel, message):
    from bot.slack.serve import SlackConfigError, check_case_channel

    fake.channels.pop(TEAM)
    if channel is not None:
        fake.channels[TEAM] = channel
    with pytest.raises(SlackConfigError, match=message):
        check_case_channel(config, BOT_TOKEN)
    assert fake.calls_to("conversations.info")[-1].body["channel"] == TEAM if channel else True


def test_the_channel_check_passes_and_an_outage_does_not_stop_serve(fake, config, caplog):
    from bot.slack.serve import check_case_channel

    check_case_channel(config, BOT_TOKEN)  # private, and the bot is in it
    fake.outage(503, methods=["conversations.info"])
    check_case_channel(config, BOT_TOKEN)
    assert "case cards wait in the outbox" in caplog.text
    check_case_channel(replace(config, cases=CaseSettings()), BOT_TOKEN)  # off: only a warning
    assert "not escalated" in caplog.text


def test_the_manifest_has_the_team_command_and_the_scopes_cases_use(config):
    from bot.slack.serve import build_manifest

    manifest = build_manifest(config, "https://trbot.example.ac.uk")
    commands = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert commands["/trcase"]["url"] == "https://trbot.example.ac.uk/slack/events"
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert {"groups:read", "usergroups:read", "chat:write", "commands"} <= set(scopes)
    assert len(scopes) == len(set(scopes))
    off = build_manifest(replace(config, cases=CaseSettings()))
    assert "/trcase" not in {c["command"] for c in off["features"]["slash_commands"]}
    assert "usergroups:read" not in off["oauth_config"]["scopes"]["bot"]


def test_serve_builds_the_triager_from_the_shipped_rules_only_when_cases_are_on(config, tmp_path):
    from bot.slack.cases import open_case_triager
    from tests.conftest import REPO, FakeEmbedder

    class Answerer:
        class index:  # noqa: N801 - the answerer's loaded index, as LiveAnswerer exposes it
            embedder = FakeEmbedder()

    paths = replace(
        config.paths, triggers=REPO / "knowledge" / "triggers.yml", watchlist_db=tmp_path / "w.db"
    )
    assert open_case_triager(replace(config, cases=CaseSettings(), paths=paths), Answerer()) is None
    triager = open_case_triager(replace(config, paths=paths), Answerer())
    assert triager.triage("Can I share our drone guidance software with a university in Iran?").escalate
    assert not triager.triage("What are export controls?").escalate


def test_a_shipped_rule_opens_a_case_end_to_end(make_server, config, tmp_path, fake):
    from bot.slack.cases import open_case_triager
    from tests.conftest import REPO, FakeEmbedder

    class Answerer:
        class index:  # noqa: N801
            embedder = FakeEmbedder()

    paths = replace(
        config.paths, triggers=REPO / "knowledge" / "triggers.yml", watchlist_db=tmp_path / "w.db"
    )
    server = make_server(triager=open_case_triager(replace(config, paths=paths), Answerer()))
    escalate(server, fake, "Can I share our drone guidance software with a university in Iran?")
    [case] = store_of(server).list()
    assert case.severity == "high" and "sensitive_country_and_technology" in case.rule_ids
