"""`trbot serve` wiring: token checks, transports, the manifest, feedback export."""

from __future__ import annotations

import csv
import io
import json

import pytest

import bot.answer
from bot.slack import answers_render as render
from bot.slack import serve
from bot.slack.app import BOT_EVENTS, BOT_SCOPES
from bot.slack.prescreen_render import SHORTCUT_PRESCREEN
from bot.slack.serve import SlackConfigError, build_manifest, export_feedback, read_tokens
from bot.state import StateStore
from tests.fake_slack import FakeSlack
from tests.slack_harness import (
    CHANNEL,
    DM,
    AppServer,
    FakeAnswerer,
    block_actions,
    dm_event,
    home_opened_event,
    make_config,
    mention_event,
    message_event,
    stored_value,
    view_submission,
)

BOT = "xoxb-1234-5678-abcdef"
APP = "xapp-1-A0TRBOT-1234-abcdef"
SIGNING = "8f742231b10e8888abcd99aaabbb85a5"

# The scope each Web API method and each event needs. A method missing here fails the test:
# add it, with its scope, and the scope to bot.slack.app.BOT_SCOPES.
METHOD_SCOPES = {
    "auth.test": None,
    "chat.postMessage": "chat:write",
    "chat.postEphemeral": "chat:write",
    "reactions.add": "reactions:write",
    "reactions.remove": "reactions:write",
    "views.publish": None,
    "views.open": None,
    "response_url": None,
}
EVENT_SCOPES = {
    "app_home_opened": None,
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
}


# -- tokens ----------------------------------------------------------------------------------


def test_socket_mode_needs_the_bot_and_app_tokens():
    assert read_tokens("socket", {"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": APP}).app_token == APP
    with pytest.raises(SlackConfigError) as missing:
        read_tokens("socket", {"SLACK_BOT_TOKEN": BOT})
    message = str(missing.value)
    assert "SLACK_APP_TOKEN is not set" in message and "xapp-" in message
    assert "api.slack.com/apps" in message and "App-Level Tokens" in message


def test_http_mode_needs_the_bot_token_and_signing_secret():
    tokens = read_tokens("http", {"SLACK_BOT_TOKEN": BOT, "SLACK_SIGNING_SECRET": SIGNING})
    assert (tokens.bot_token, tokens.signing_secret, tokens.app_token) == (BOT, SIGNING, None)
    with pytest.raises(SlackConfigError, match="SLACK_SIGNING_SECRET is not set.*Signing Secret"):
        read_tokens("http", {"SLACK_BOT_TOKEN": BOT})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "SLACK_BOT_TOKEN is not set.*xoxb-.*OAuth & Permissions"),
        ({"SLACK_BOT_TOKEN": APP, "SLACK_APP_TOKEN": APP}, "SLACK_BOT_TOKEN is malformed.*'xapp-…'"),
        ({"SLACK_BOT_TOKEN": f" {BOT}", "SLACK_APP_TOKEN": APP}, "SLACK_BOT_TOKEN is malformed"),
        ({"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": BOT}, "SLACK_APP_TOKEN is malformed"),
    ],
)
def test_missing_or_malformed_tokens_say_which_and_where(env, expected):
    with pytest.raises(SlackConfigError, match=expected) as error:
        read_tokens("socket", env)
    assert BOT[6:] not in str(error.value) and APP[6:] not in str(error.value)  # never echo a secret


def test_serve_checks_tokens_before_loading_the_model(tmp_path, monkeypatch):
    monkeypatch.setattr(bot.answer, "open_answerer", lambda config: pytest.fail("model loaded"))
    with pytest.raises(SlackConfigError, match="SLACK_BOT_TOKEN"):
        serve.serve(make_config("http://127.0.0.1:9/api/", tmp_path), env={})


def test_serve_over_http_loads_once_verifies_the_token_and_serves(fake, tmp_path, monkeypatch):
    loaded, served = [], []
    monkeypatch.setattr(bot.answer, "open_answerer", lambda config: loaded.append(config) or FakeAnswerer())
    monkeypatch.setattr(
        serve, "run_http", lambda app, listener, settings, secret: served.append((app, listener, secret))
    )
    config = make_config(fake.api_url, tmp_path)
    serve.serve(
        config, transport="http", port=0, env={"SLACK_BOT_TOKEN": BOT, "SLACK_SIGNING_SECRET": SIGNING}
    )
    [(app, listener, secret)] = served
    assert listener.getsockname()[0] == "127.0.0.1" and secret == SIGNING  # bound before the load
    listener.close()
    assert len(loaded) == 1 and config.paths.state_db.exists()
    assert app.client.base_url == fake.api_url
    assert fake.calls_to("auth.test")[0].headers["authorization"] == f"Bearer {BOT}"


def test_serve_in_socket_mode_uses_the_app_token(fake, tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(bot.answer, "open_answerer", lambda config: FakeAnswerer())
    monkeypatch.setattr(serve, "run_socket_mode", lambda app, token, **kwargs: started.append(token))
    serve.serve(make_config(fake.api_url, tmp_path), env={"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": APP})
    assert started == [APP]


def test_a_token_rejected_by_slack_stops_serve_with_a_clear_message(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(bot.answer, "open_answerer", lambda config: FakeAnswerer())
    fake.error_next("auth.test", "invalid_auth")
    with pytest.raises(SlackConfigError, match="SLACK_BOT_TOKEN was rejected.*invalid_auth"):
        serve.serve(make_config(fake.api_url, tmp_path), env={"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": APP})


def test_http_server_has_a_health_check_and_404s_elsewhere(fake, tmp_path):
    import urllib.error
    import urllib.request

    server = AppServer(make_config(fake.api_url, tmp_path), FakeAnswerer(), fake)
    try:
        base = server.url.removesuffix("/slack/events")
        assert urllib.request.urlopen(f"{base}/health", timeout=5).read() == b"ok"
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(urllib.request.Request(f"{base}/other", data=b"x"), timeout=5)
        assert error.value.code == 404
    finally:
        server.stop()


# -- manifest --------------------------------------------------------------------------------


def test_socket_mode_manifest(tmp_path):
    manifest = build_manifest(make_config("https://slack.com/api/", tmp_path, command="/tr"))
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True and "request_url" not in settings["event_subscriptions"]
    assert settings["event_subscriptions"]["bot_events"] == list(BOT_EVENTS)
    assert settings["interactivity"] == {"is_enabled": True}
    assert manifest["oauth_config"]["scopes"]["bot"] == list(BOT_SCOPES)
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/tr", "/prescreen"]
    assert [s["callback_id"] for s in manifest["features"]["shortcuts"]] == [SHORTCUT_PRESCREEN]
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_read_only_enabled"] is False
    assert len(manifest["display_information"]["name"]) <= 35
    assert "Example University" in manifest["display_information"]["description"]


def test_http_manifest_points_every_url_at_slack_events(tmp_path):
    manifest = build_manifest(make_config("https://slack.com/api/", tmp_path), "https://bot.example.ac.uk/")
    url = "https://bot.example.ac.uk/slack/events"
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert manifest["settings"]["event_subscriptions"]["request_url"] == url
    assert manifest["settings"]["interactivity"]["request_url"] == url
    assert manifest["features"]["slash_commands"][0]["url"] == url


def test_manifest_events_are_exactly_the_events_the_app_handles(fake, tmp_path):
    server = AppServer(make_config(fake.api_url, tmp_path), FakeAnswerer(), fake)
    try:
        samples = {
            "app_home_opened": home_opened_event(),
            "app_mention": mention_event("q"),
            "message.channels": message_event("q"),
            "message.groups": message_event("q", channel="G0PRIVATE", channel_type="group"),
            "message.im": dm_event("q"),
        }
        assert set(samples) == set(BOT_EVENTS)
        for name, event in samples.items():
            assert server.post_event(event).status == 200, name
        unsubscribed = {"type": "reaction_added", "user": "U1", "reaction": "x", "event_ts": "1.1"}
        assert server.post_event(unsubscribed).status == 404  # bolt: no listener for it
        server.settle()
    finally:
        server.stop()


def test_manifest_scopes_are_exactly_the_scopes_the_app_uses(fake, tmp_path):
    config = make_config(fake.api_url, tmp_path, channels={"C0PRIV": {"visibility": "private"}})
    server = AppServer(config, FakeAnswerer(), fake)
    try:
        _exercise_every_feature(server, fake)
    finally:
        server.stop()
    used = {call.method for call in fake.calls}
    assert used <= set(METHOD_SCOPES), f"add these methods and their scopes: {used - set(METHOD_SCOPES)}"
    needed = {METHOD_SCOPES[method] for method in used} | {EVENT_SCOPES[event] for event in BOT_EVENTS}
    needed = (needed | {"commands"}) - {None}
    assert needed == set(build_manifest(config)["oauth_config"]["scopes"]["bot"])


def _exercise_every_feature(server: AppServer, fake: FakeSlack) -> None:
    server.post_event(mention_event("q"))
    server.post_event(mention_event("q", channel="C0PRIV"))
    server.post_event(dm_event("q"))
    server.post_event(home_opened_event())
    server.post_command("q")
    value = stored_value(server.store, "q")
    server.post_interaction(block_actions(render.ACTION_SHARE, value, fake.response_url("s"), ephemeral=True))
    server.post_interaction(block_actions(render.ACTION_HELPFUL, value, fake.response_url("h")))
    server.post_interaction(block_actions(render.ACTION_NOT_HELPFUL, value, fake.response_url("n")))
    metadata = fake.wait_for("views.open")[0].body["view"]["private_metadata"]
    server.post_interaction(view_submission(render.VIEW_FEEDBACK, metadata, "why"))
    server.settle()
    for method in (
        "chat.postMessage",
        "chat.postEphemeral",
        "reactions.add",
        "views.publish",
        "response_url",
    ):
        assert fake.calls_to(method), method


# -- feedback export -------------------------------------------------------------------------


def test_feedback_export_as_csv_and_json(tmp_path):
    store = StateStore(tmp_path / "state.db")
    store.add_feedback(
        user="U1", channel=CHANNEL, question="Do I need a licence?", chunk_ids=["a#1"], helpful=True
    )
    second = store.add_feedback(user="U2", channel=DM, question="=HYPERLINK(1)", chunk_ids=[], helpful=False)
    store.set_feedback_reason(second, "-missing, with a comma", user="U2")
    rows = list(csv.DictReader(io.StringIO(export_feedback(store, "csv"))))
    assert list(rows[0]) == list(serve.FEEDBACK_FIELDS)
    assert rows[0]["chunk_ids"] == '["a#1"]' and rows[0]["helpful"] == "True"
    assert rows[1]["question"] == "'=HYPERLINK(1)" and rows[1]["reason"] == "'-missing, with a comma"
    data = json.loads(export_feedback(store, "json"))
    assert data[1] | {"created_at": None} == {
        "id": second,
        "created_at": None,
        "user": "U2",
        "channel": DM,
        "question": "=HYPERLINK(1)",
        "chunk_ids": [],
        "helpful": False,
        "reason": "-missing, with a comma",
    }
    with pytest.raises(ValueError):
        export_feedback(store, "xml")
    store.close()
