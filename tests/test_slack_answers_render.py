from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.config import InstitutionSettings
from bot.records import Answer, AnswerStatus, Citation, Confidence, Passage
from bot.slack import answers_render as render
from bot.slack import blocks
from tests.slack_harness import CONTACT, assert_within_slack_limits, make_answer

ROOT = Path(__file__).resolve().parents[1]


def _texts(blocks: list[dict]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def _buttons(blocks: list[dict]) -> dict[str, dict]:
    return {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}


def test_escape_mrkdwn_escapes_the_three_control_characters():
    assert (
        blocks.escape_mrkdwn("a & b <!channel> <@U1> > c") == "a &amp; b &lt;!channel&gt; &lt;@U1&gt; &gt; c"
    )


def test_link_cleans_the_label_and_refuses_unsafe_urls():
    assert (
        blocks.link("https://x.ac.uk/a?b=1&c=2", "A | B > C & D")
        == "<https://x.ac.uk/a?b=1&amp;c=2|A   B   C &amp; D>"
    )
    assert blocks.link("javascript:alert(1)", "Click <me>") == "Click  me"
    assert blocks.link(None, "Plain") == "Plain"
    assert blocks.link("https://x.ac.uk/a b", "Spaces") == "Spaces"


def test_answer_quotes_passages_with_citation_numbers_and_bold_highlights():
    blocks = render.build_answer_blocks(make_answer("Do I need a licence?", passages=2))
    text = _texts(blocks)
    assert "*[1]*" in text and "*[2]*" in text
    passage = next(b for b in blocks if b["type"] == "section" and b["text"]["text"].startswith("*[1]*"))
    quoted = passage["text"]["text"].split("\n")[1:]
    assert quoted and all(line.startswith(">") for line in quoted)
    assert (
        "*You need an export licence before sharing controlled technology abroad.*" in passage["text"]["text"]
    )


def test_answer_lists_sources_with_links_sections_and_review_dates():
    blocks = render.build_answer_blocks(make_answer("q", passages=2))
    sources = next(
        b["text"]["text"] for b in blocks if b["type"] == "section" and "*Sources*" in b["text"]["text"]
    )
    assert (
        "[1] <https://www.example.ac.uk/guidance/export-controls-1|Export controls 1 — Do I need a licence?>"
        in sources
    )
    assert "last reviewed 2026-03-01" in sources
    assert "[2] <https://www.example.ac.uk/guidance/export-controls-2|" in sources


def test_answer_shows_confidence_contact_and_feedback_buttons():
    blocks = render.build_answer_blocks(make_answer("q"), answer_id="ans123")
    text = _texts(blocks)
    assert "Confidence: *High* — " in text
    assert CONTACT.team_name in text and "mailto:research-security@example.ac.uk" in text
    buttons = _buttons(blocks)
    assert set(buttons) == {render.ACTION_HELPFUL, render.ACTION_NOT_HELPFUL, render.ACTION_TALK}
    assert render.decode_action_value(buttons[render.ACTION_HELPFUL]["value"]) == render.ActionValue("ans123")
    assert not any(b["type"] == "actions" for b in render.build_answer_blocks(make_answer("q")))


def test_private_answers_get_a_share_button_carrying_only_the_answer_id():
    blocks = render.build_answer_blocks(make_answer("a question"), answer_id="ans123", shareable=True)
    share = _buttons(blocks)[render.ACTION_SHARE]
    assert share["value"] == '{"a":"ans123"}'  # the question, chunks and thread stay in the database


def test_guidance_text_and_titles_are_escaped():
    answer = make_answer("q", passages=1, text="Tell <!channel> & <!here> about <https://evil|this> > now.")
    citation = Citation(1, "Title <!everyone>", "S & <b>", "https://ok.ac.uk", "p.md", "2026 <x>")
    answer = Answer(
        answer.question,
        answer.status,
        answer.confidence,
        answer.passages,
        (citation,),
        answer.contact,
        "Intro <@U123>",
    )
    text = _texts(render.build_answer_blocks(answer))
    assert "<!" not in text and "<@" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt; &amp; &lt;!here&gt;" in text
    assert "Title &lt;!everyone&gt;" in text


def test_echoed_question_is_escaped():
    blocks = render.build_answer_blocks(make_answer("ping <!channel> & <@U1>?"), echo_question=True)
    assert "You asked: _ping &lt;!channel&gt; &amp; &lt;@U1&gt;?_" in blocks[0]["elements"][0]["text"]


def test_shared_answer_names_who_shared_it():
    blocks = render.build_answer_blocks(make_answer("q"), shared_by="U0SHARER")
    assert blocks[0]["elements"][0]["text"].startswith("<@U0SHARER> shared an answer to: _q_")
    assert render.build_answer_blocks(make_answer("q"), shared_by="<!here>")[0]["elements"][0][
        "text"
    ].startswith("someone shared")


@pytest.mark.parametrize("status", [AnswerStatus.NOT_COVERED, AnswerStatus.OFF_TOPIC])
def test_not_covered_reply_is_honest_and_gives_the_contact(status):
    answer = make_answer("What is the capital of France?", status=status)
    blocks = render.build_answer_blocks(answer, answer_id="ans1")
    text = _texts(blocks)
    assert "doesn't cover this" in text
    assert "#research-security-help" in text and "mailto:research-security@example.ac.uk" in text
    assert "*[1]*" not in text and "Sources" not in text
    assert render.ACTION_NOT_HELPFUL in _buttons(blocks)


def test_a_very_long_answer_stays_within_slack_limits():
    nasty = ('Export & <control> of "dual-use" items ' * 400).strip()
    passages = tuple(
        Passage(n, f"doc-{n}.md#{'x' * 200}", nasty, (nasty[:100], "missing sentence"), 0.5)
        for n in range(1, 61)
    )
    citations = tuple(
        Citation(n, "T<" * 300, "S&" * 300, "https://example.ac.uk/" + "a" * 3000, "p.md", "2026-01-01")
        for n in range(1, 61)
    )
    answer = Answer(
        "Q" * 5000, AnswerStatus.ANSWERED, Confidence.LOW, passages, citations, CONTACT, "M&" * 3000
    )
    blocks = render.build_answer_blocks(answer, answer_id="a" * 64, shareable=True, echo_question=True)
    assert_within_slack_limits(blocks)
    text = _texts(blocks)
    assert "*[1]*" in text and "more passages not shown" in text
    assert len(render.build_answer_text(answer)) <= render.MAX_FALLBACK_CHARS


def test_many_short_passages_are_capped_at_fifty_blocks():
    passages = tuple(Passage(n, f"c{n}", f"Short passage {n}.", (), 0.5) for n in range(1, 80))
    citations = tuple(Citation(n, f"T{n}", "", None, f"p{n}.md", None) for n in range(1, 80))
    answer = Answer("q", AnswerStatus.ANSWERED, Confidence.MEDIUM, passages, citations, CONTACT, "m")
    blocks = render.build_answer_blocks(answer, answer_id="ans1", shareable=True)
    assert_within_slack_limits(blocks)
    assert blocks[-1]["type"] == "actions"
    assert "(p1.md)" in _texts(blocks)  # no URL: the file path stands in


def test_action_values_hold_a_short_id_and_nothing_else_is_read_from_them():
    assert render.decode_action_value(render.encode_action_value("abc")) == render.ActionValue("abc")
    for raw in ('{"nope": 1}', '{"q": "x", "c": "abc"}', '{"a": ""}', '{"a": "' + "x" * 65 + '"}', "[1]"):
        with pytest.raises(ValueError):
            render.decode_action_value(raw)


def test_echoed_questions_neutralise_slack_formatting():
    blocks = render.build_answer_blocks(make_answer("*b* _i_ ~s~ `c` ```f```"), echo_question=True)
    echo = blocks[0]["elements"][0]["text"]
    assert echo == "You asked: _∗b∗ ˍiˍ ∼s∼ ˋcˋ ˋˋˋfˋˋˋ_"
    shared = render.build_answer_blocks(make_answer("*b*"), shared_by="U0SHARER")[0]["elements"][0]["text"]
    assert shared == "<@U0SHARER> shared an answer to: _∗b∗_"


def test_highlight_spanning_lines_is_bold_on_each_line():
    passage = Passage(
        1, "c", "Intro.\nFirst line of it\nsecond line. After.", ("First line of it\nsecond line.",), 0.5
    )
    answer = Answer("q", AnswerStatus.ANSWERED, Confidence.HIGH, (passage,), (), CONTACT, "m")
    body = render.build_answer_blocks(answer)[1]["text"]["text"]
    assert ">*First line of it*\n>*second line.* After." in body


def test_fit_escaped_never_exceeds_the_limit():
    for limit in (1, 5, 50, 333):
        assert len(blocks.fit_escaped("<&>" * 500, limit)) <= limit


def test_answer_text_is_short_and_escaped():
    text = render.build_answer_text(make_answer("q", passages=1, text="Say <!here> to " + "everyone " * 200))
    assert len(text) <= render.MAX_FALLBACK_CHARS and "<!here>" not in text


def test_home_view_uses_the_institution_settings():
    institution = InstitutionSettings(
        name="Uni of Testing",
        team_name="TR Desk",
        email="tr@test.ac.uk",
        slack_channel="C0TRHELP",
        url="https://test.ac.uk/tr",
    )
    view = render.build_home_view(institution, command="/ask-tr")
    text = _texts(view["blocks"])
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    for expected in (
        "Uni of Testing",
        "TR Desk",
        "mailto:tr@test.ac.uk",
        "<#C0TRHELP>",
        "https://test.ac.uk/tr",
        "/ask-tr",
    ):
        assert expected in text
    assert "Example University" not in text
    assert "don't give legal advice" in text and "Example questions" in text


def test_error_blocks_give_the_reference_and_contact():
    blocks = render.build_error_blocks("TR-ABC123", CONTACT)
    text = _texts(blocks)
    assert "TR-ABC123" in text and "Sorry" in text and CONTACT.team_name in text


def test_feedback_modal_asks_for_an_optional_reason():
    view = render.build_feedback_modal('{"feedback_id": 3}', "TR <Desk>")
    assert view["callback_id"] == render.VIEW_FEEDBACK and view["private_metadata"] == '{"feedback_id": 3}'
    assert all(len(view[key]["text"]) <= 24 for key in ("title", "submit", "close"))
    assert view["blocks"][1]["optional"] is True
    assert "TR &lt;Desk&gt;" in _texts(view["blocks"])


def test_guidance_markdown_is_shown_as_plain_words_with_highlights_intact():
    text = (
        "Intro with [a link](https://x.ac.uk).\n\n- Take a **clean laptop** abroad.\n## Next\n* Other item."
    )
    passage = Passage(1, "c", text, ("- Take a **clean laptop** abroad.",), 0.5)
    answer = Answer("q", AnswerStatus.ANSWERED, Confidence.HIGH, (passage,), (), CONTACT, "m")
    body = render.build_answer_blocks(answer)[1]["text"]["text"]
    assert (
        body.split("\n", 1)[1]
        == ">Intro with a link.\n>\n>*• Take a clean laptop abroad.*\n>Next\n>• Other item."
    )
    assert "**" not in render.build_answer_text(answer)


# -- review dates and the English-only reply (issue 8) ----------------------------------------


def test_a_source_overdue_for_review_is_flagged():
    from dataclasses import replace

    answer = make_answer("q")
    stale = replace(answer, citations=(replace(answer.citations[0], stale=True), *answer.citations[1:]))
    assert "overdue for review" not in str(render.build_answer_blocks(answer))
    assert str(render.build_answer_blocks(stale)).count("overdue for review") == 1


def test_a_question_not_in_english_gets_its_own_reply():
    message = "I can only read questions in English."
    answer = Answer(
        "¿Necesito una licencia?", AnswerStatus.NOT_ENGLISH, Confidence.NONE, (), (), CONTACT, message
    )
    text = str(render.build_answer_blocks(answer))
    assert ":speech_balloon:" in text and message in text
