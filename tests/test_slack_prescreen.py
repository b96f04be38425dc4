"""Partner pre-screening in Slack, over real HTTP (signed requests) and the fake Slack Web API:
DMs routed to a screen, the unsure question and its buttons, /prescreen and the global shortcut
with their form, red results opening a case (its card to the team), amber ones offering one,
and the pure Block Kit of the result."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bot.config import CaseSettings, OutboxSettings
from bot.screening import PartnerQuery, Screener, load_rules
from bot.slack import prescreen_render as render
from bot.slack.serve import build_manifest
from bot.watchlists import WatchlistStore, load_matcher
from tests.conftest import REPO
from tests.fake_slack import FakeSlack
from tests.slack_harness import (
    DM,
    USER,
    AppServer,
    FakeAnswerer,
    all_text,
    assert_within_slack_limits,
    block_actions,
    command_form,
    dm_event,
    make_config,
    shortcut_payload,
    view_submission_values,
)

TEAM = "G0SECURITY"
OFFICER = "U0OFFICER"
STRANGER = "U0STRANGER"
RULES = REPO / "knowledge" / "screening-rules.yml"
GUIDANCE = REPO / "knowledge" / "guidance"


@pytest.fixture(scope="module")
def screener(tmp_path_factory):
    """The shipped rules and starter list plus the UK sanctions fixture (keywords only: no model)."""
    tmp = tmp_path_factory.mktemp("prescreen")
    config = make_config("http://unused/", tmp)
    config = replace(
        config,
        paths=replace(
            config.paths, watchlist_db=tmp / "w.db", watchlists_dir=REPO / "knowledge" / "watchlists"
        ),
    )
    store = WatchlistStore(config.paths.watchlist_db)
    store.import_file(REPO / "tests" / "data" / "watchlists" / "uk-sanctions.csv", "uk-sanctions")
    matcher = load_matcher(config, store)
    store.close()
    return Screener(matcher, load_rules(RULES, GUIDANCE), settings=config.screening)


@pytest.fixture
def fake():
    with FakeSlack() as fake:
        fake.channels[TEAM] = {"is_private": True, "is_member": True}
        yield fake


def _config(fake, tmp_path, *, cases: bool = False, amber: str = "offer"):
    config = make_config(fake.api_url, tmp_path)
    fast = OutboxSettings(backoff_initial_seconds=0.05, backoff_max_seconds=0.2, backoff_jitter=0.0)
    config = replace(config, outbox=fast)
    if cases:
        settings = CaseSettings(enabled=True, channel=TEAM, team_users=(OFFICER,), prescreen_amber=amber)
        config = replace(config, cases=settings)
    return config


@pytest.fixture
def make_server(fake, tmp_path, screener):
    servers: list[AppServer] = []

    def start(*, cases: bool = False, amber: str = "offer", answerer=None, with_screener=True) -> AppServer:
        config = _config(fake, tmp_path, cases=cases, amber=amber)
        server = AppServer(
            config, answerer or FakeAnswerer(), fake, screener=screener if with_screener else None
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        try:
            server.stop()
        except Exception:
            pass


def _posts(fake: FakeSlack, channel: str) -> list:
    return [call for call in fake.calls_to("chat.postMessage") if call.body.get("channel") == channel]


def _dm(server: AppServer, fake: FakeSlack, text: str, count: int = 1, **options):
    event = dm_event(text, **options)
    assert server.post_event(event).status == 200
    fake.wait_for("chat.postMessage", count)
    server.settle()
    return event


def _result(call) -> tuple[str, dict]:
    """The header text and the attachment of a posted result."""
    body = call.body
    return body["blocks"][0]["text"]["text"], body["attachments"][0]


# -- DMs -----------------------------------------------------------------------------------------


def test_a_dm_asking_to_prescreen_gets_a_red_result_not_an_answer(make_server, fake):
    answerer = FakeAnswerer()
    server = make_server(answerer=answerer)
    _dm(server, fake, "prescreen Harbin Institute of Technology")
    (call,) = _posts(fake, DM)
    header, attachment = _result(call)
    assert header.startswith("🔴 Red")
    assert attachment["color"] == render.COLOURS["red"]
    text = all_text(call.body)
    assert "unitracker.aspi.org.au/universities/harbin-institute-of-technology" in text
    assert "Sanctions and research partners" not in text or "Guidance:" in text
    assert "not a clearance" in text
    assert_within_slack_limits(call.body["blocks"])
    assert_within_slack_limits(attachment["blocks"])
    assert answerer.calls == []  # screened, not answered


def test_natural_phrasing_is_screened_with_the_area(make_server, fake):
    server = make_server()
    _dm(server, fake, "is it ok to work with BUAA on aerodynamics?")
    (call,) = _posts(fake, DM)
    text = all_text(call.body)
    assert "Beihang University" in text and "aerodynamics" in text
    assert "aeronautical and space technology" in text  # the export-control area fired


def test_a_guidance_question_in_a_dm_is_answered_as_before(make_server, fake):
    answerer = FakeAnswerer()
    server = make_server(answerer=answerer)
    _dm(server, fake, "What is the Entity List?")
    assert [question for question, _ in answerer.calls] == ["What is the Entity List?"]
    assert "attachments" not in _posts(fake, DM)[0].body


def test_without_a_screener_every_dm_is_answered(make_server, fake):
    answerer = FakeAnswerer()
    server = make_server(answerer=answerer, with_screener=False)
    _dm(server, fake, "prescreen Harbin Institute of Technology")
    assert len(answerer.calls) == 1


def test_a_retried_dm_event_gives_one_result(make_server, fake):
    server = make_server()
    event = dm_event("prescreen Zhejiang University")
    first = server.post_event(event, event_id="Ev0PRESCREEN1")
    again = server.post_event(event, event_id="Ev0PRESCREEN1", retry_num=1)
    assert first.status == again.status == 200
    fake.wait_for("chat.postMessage", 1)
    server.settle()
    assert len(_posts(fake, DM)) == 1


# -- unsure: the two buttons -----------------------------------------------------------------------


def _unsure(server, fake):
    _dm(server, fake, "Someone from Harbin Institute of Technology emailed me asking for our code")
    (question,) = _posts(fake, DM)
    actions = question.body["blocks"][1]["elements"]
    assert [a["action_id"] for a in actions] == [render.ACTION_ROUTE_SCREEN, render.ACTION_ROUTE_GUIDANCE]
    return {a["action_id"]: a["value"] for a in actions}


def test_an_unclear_dm_asks_and_screen_this_partner_screens(make_server, fake):
    answerer = FakeAnswerer()
    server = make_server(answerer=answerer)
    values = _unsure(server, fake)
    click = block_actions(
        render.ACTION_ROUTE_SCREEN, values[render.ACTION_ROUTE_SCREEN], fake.response_url("q"), channel=DM
    )
    assert server.post_interaction(click).status == 200
    fake.wait_for("chat.postMessage", 2)
    server.settle()
    result = _posts(fake, DM)[-1]
    assert _result(result)[0].startswith("🔴")
    replaced = [c for c in fake.calls_to("response_url") if c.body.get("replace_original")]
    assert replaced and "Pre-screening" in replaced[0].body["text"]
    assert answerer.calls == []


def test_answer_from_guidance_answers_the_message(make_server, fake):
    answerer = FakeAnswerer()
    server = make_server(answerer=answerer)
    values = _unsure(server, fake)
    click = block_actions(
        render.ACTION_ROUTE_GUIDANCE, values[render.ACTION_ROUTE_GUIDANCE], fake.response_url("q"), channel=DM
    )
    assert server.post_interaction(click).status == 200
    fake.wait_for("chat.postMessage", 2)
    server.settle()
    assert answerer.calls == [
        ("Someone from Harbin Institute of Technology emailed me asking for our code", None)
    ]


def test_someone_else_clicking_the_buttons_is_refused(make_server, fake):
    server = make_server()
    values = _unsure(server, fake)
    click = block_actions(
        render.ACTION_ROUTE_SCREEN, values[render.ACTION_ROUTE_SCREEN], fake.response_url("q"), channel=DM
    )
    click["user"]["id"] = STRANGER
    assert server.post_interaction(click).status == 200
    fake.wait_for("response_url", 1)
    server.settle()
    (refusal,) = fake.calls_to("response_url")
    assert (
        refusal.body["response_type"] == "ephemeral"
        and "belong to the person who asked" in refusal.body["text"]
    )
    assert len(_posts(fake, DM)) == 1  # only the question: nothing was screened


# -- cases ----------------------------------------------------------------------------------------


def test_a_red_dm_result_opens_a_case_and_posts_its_card_to_the_team(make_server, fake):
    server = make_server(cases=True)
    _dm(server, fake, "prescreen NUDT", count=2)
    store = server.deps.cases.store
    (case,) = store.list("open")
    assert case.source == "pre-screen" and case.severity == "high" and case.requester == USER
    assert case.attachment["rating"] == "red" and case.attachment["query"]["organisation"] == "NUDT"
    assert case.attachment["matches"][0]["entry"] == "National University of Defense Technology"
    (card,) = [c for c in _posts(fake, TEAM) if not c.body.get("thread_ts")]
    assert case.ref in all_text(card.body)
    (result,) = _posts(fake, DM)
    assert case.ref in all_text(result.body) and case.ref in result.body["text"]


def test_each_red_partner_is_its_own_case_and_the_same_one_again_joins_it(make_server, fake):
    server = make_server(cases=True)
    _dm(server, fake, "prescreen NUDT", count=2)
    _dm(server, fake, "prescreen Beihang University", count=4)
    _dm(server, fake, "prescreen NUDT", count=5)
    cases = server.deps.cases.store.list("open")
    assert sorted(c.attachment["query"]["organisation"] for c in cases) == ["Beihang University", "NUDT"]
    first, _, again = _posts(fake, DM)
    nudt = next(c for c in cases if c.attachment["query"]["organisation"] == "NUDT")
    assert nudt.ref in first.body["text"] and nudt.ref in again.body["text"]


def test_an_amber_result_offers_a_case_and_the_button_opens_it(make_server, fake):
    server = make_server(cases=True)
    _dm(server, fake, "prescreen Harbin Medical University")
    (result,) = _posts(fake, DM)
    assert _result(result)[0].startswith("🟠 Amber")
    assert server.deps.cases.store.list("open") == []
    actions = next(b for b in result.body["attachments"][0]["blocks"] if b["type"] == "actions")
    offer = next(a for a in actions["elements"] if a["action_id"] == render.ACTION_OPEN_CASE)
    click = block_actions(render.ACTION_OPEN_CASE, offer["value"], fake.response_url("r"), channel=DM)
    assert server.post_interaction(click).status == 200
    fake.wait_for("response_url", 1)
    server.settle()
    (case,) = server.deps.cases.store.list("open")
    assert case.severity == "medium" and case.attachment["rating"] == "amber"
    (updated,) = fake.calls_to("response_url")
    assert updated.body["replace_original"] is True and case.ref in all_text(updated.body)
    assert [c for c in _posts(fake, TEAM) if not c.body.get("thread_ts")]  # the team's card


def test_amber_can_open_a_case_at_once_when_the_settings_say_so(make_server, fake):
    server = make_server(cases=True, amber="open")
    _dm(server, fake, "prescreen Harbin Medical University", count=2)
    (case,) = server.deps.cases.store.list("open")
    assert case.ref in all_text(_posts(fake, DM)[0].body)


def test_without_cases_a_red_result_names_the_team_and_offers_no_case(make_server, fake):
    server = make_server()
    _dm(server, fake, "prescreen NUDT")
    (result,) = _posts(fake, DM)
    actions = next(b for b in result.body["attachments"][0]["blocks"] if b["type"] == "actions")
    assert render.ACTION_OPEN_CASE not in [a["action_id"] for a in actions["elements"]]
    assert "Research Security Team" in all_text(result.body)


# -- /prescreen, the shortcut and the form -------------------------------------------------------------


def test_the_slash_command_opens_the_form_with_the_organisation(make_server, fake):
    server = make_server()
    form = command_form("Harbin Institute of Technology", fake.response_url("c"), command="/prescreen")
    assert server.post_form(form).status == 200
    (opened,) = fake.wait_for("views.open")
    view = opened.body["view"]
    assert view["callback_id"] == render.VIEW_PRESCREEN
    inputs = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert list(inputs) == ["organisation", "country", "area", "kind", "funding", "notes"]
    assert inputs["organisation"]["element"]["initial_value"] == "Harbin Institute of Technology"
    kinds = [o["value"] for o in inputs["kind"]["element"]["options"]]
    assert kinds == [
        "joint-research",
        "visiting-researcher",
        "funding",
        "equipment",
        "data-sharing",
        "licence",
    ]


def test_the_global_shortcut_opens_the_form(make_server, fake):
    server = make_server()
    assert server.post_interaction(shortcut_payload(render.SHORTCUT_PRESCREEN)).status == 200
    (opened,) = fake.wait_for("views.open")
    assert opened.body["view"]["callback_id"] == render.VIEW_PRESCREEN


def test_submitting_the_form_dms_the_result(make_server, fake):
    server = make_server()
    values = {
        "organisation": "Beihang Univ",
        "country": "China",
        "area": "hypersonic flight",
        "kind": {"select": "visiting-researcher"},
        "funding": None,
        "notes": None,
    }
    reply = server.post_interaction(view_submission_values(render.VIEW_PRESCREEN, values))
    assert reply.status == 200 and reply.json()["response_action"] == "update"
    fake.wait_for("chat.postMessage", 1)
    server.settle()
    (result,) = _posts(fake, USER)
    text = all_text(result.body)
    assert _result(result)[0].startswith("🔴") and "Beihang University" in text
    assert "ATAS" in text  # a visiting researcher in an ATAS subject from a non-exempt country


def test_a_form_without_an_organisation_shows_the_error_in_the_form(make_server, fake):
    server = make_server()
    reply = server.post_interaction(view_submission_values(render.VIEW_PRESCREEN, {"organisation": "   "}))
    assert reply.status == 200
    body = reply.json()
    assert body["response_action"] == "errors" and "organisation" in body["errors"]
    server.settle()
    assert _posts(fake, USER) == []


def test_the_manifest_has_the_command_and_the_shortcut(fake, tmp_path):
    manifest = build_manifest(_config(fake, tmp_path), "https://bot.example")
    commands = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert commands["/prescreen"]["url"] == "https://bot.example/slack/events"
    assert manifest["features"]["shortcuts"][0]["callback_id"] == render.SHORTCUT_PRESCREEN


# -- the renderer ------------------------------------------------------------------------------------


def test_the_result_escapes_what_users_and_lists_wrote(screener):
    screening = screener.screen(
        PartnerQuery("<!channel> Harbin Institute of Technology <@U123>", notes="<http://x|y>")
    )
    message = render.build_result_message(screening, "Team <b>", user=USER, case_offer=True)
    text = all_text(message)
    assert "<!channel>" not in text and "<@U123>" not in text and "&lt;!channel&gt;" in text
    assert_within_slack_limits(message["blocks"])
    assert_within_slack_limits(message["attachments"][0]["blocks"])


def test_the_case_button_value_carries_the_query_and_the_user_only(screener):
    query = PartnerQuery("Zhejiang University", area="robots", notes="n" * 3000)
    value = render.encode_query_value(query, USER)
    assert len(value) <= 2000
    decoded, user = render.decode_query_value(value)
    assert user == USER and decoded.organisation == "Zhejiang University" and decoded.area == "robots"
    assert set(json.loads(value)) <= {"u", "o", "c", "a", "k", "f", "n"}


def test_every_rating_has_its_colour_and_emoji(screener):
    for organisation, rating in (
        ("NUDT", "red"),
        ("Nanjing University", "amber"),
        ("University of Leeds", "green"),
    ):
        screening = screener.screen(PartnerQuery(organisation))
        assert screening.rating == rating
        message = render.build_result_message(screening, "Team")
        assert message["blocks"][0]["type"] == "header"
        assert message["blocks"][0]["text"]["text"].startswith(render.EMOJI[rating])
        assert message["attachments"][0]["color"] == render.COLOURS[rating]
