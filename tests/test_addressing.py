"""bot.addressing: is a thread reply or an "all"-channel message a question to the bot?"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.addressing import (
    content_words,
    decide_channel_message,
    decide_thread_reply,
    is_acknowledgement,
    is_question,
    security_terms,
)

BOT = "U0BOT"
ASKER = "U0ASKER"
LABELS = Path(__file__).resolve().parents[1] / "eval" / "thread-replies.yaml"


def reply(text: str, author: str = ASKER) -> bool:
    return decide_thread_reply(text, author=author, askers=(ASKER,), bot_user_id=BOT).answer


@pytest.mark.parametrize(
    "text",
    ["thanks", "ok", "lol", "Thanks!!", "great, thank you so much 🙏", "👍", ":pray:", "ok cool", "+1"],
)
def test_acknowledgements_and_laughter_are_not_answered(text):
    assert is_acknowledgement(text) and not reply(text)


def test_talk_between_people_is_not_answered():
    assert not reply("<@U0DAVE> can you book the room for Friday?")
    assert not reply("<!here> can someone check this?")
    assert not reply("are we still on for lunch?")
    assert decide_thread_reply(
        "<@U0DAVE> thoughts?", author=ASKER, askers=(ASKER,), bot_user_id=BOT
    ).reason == ("addressed to someone else")


def test_follow_up_questions_from_the_asker_are_answered():
    for text in ("what about China?", "and if they only work remotely?", "is that for PhD students only"):
        assert reply(text), text
    assert reply("thanks - and do I need one for a conference talk too?")
    assert reply("tell me more about the public domain exemption")


def test_only_the_asker_or_someone_mentioning_the_bot_gets_an_answer():
    assert not reply("what about the encryption software though?", author="U0OTHER")
    assert reply(f"<@{BOT}> what about the encryption software?", author="U0OTHER")
    # anyone who asked the bot in the thread counts as an asker
    assert decide_thread_reply(
        "and for Iran?", author="U0TWO", askers=(ASKER, "U0TWO"), bot_user_id=BOT
    ).answer


def test_statements_from_the_asker_are_not_answered():
    assert not reply("I'll forward this to my head of department")
    assert not reply("makes sense")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Congrats to Priya on the new grant!", False),
        ("the seminar is moved to room 2.14", False),
        ("Anyone fancy lunch at 12:30?", False),  # a question, but not about research security
        ("<@U0MEERA> do we need an export licence for this?", False),  # asked of a person
        ("Do I need an export licence to share my code with a partner in India?", True),
        ("is dual-use research covered by export controls", True),
    ],
)
def test_all_channels_answer_only_research_security_questions(text, answer):
    assert decide_channel_message(text, bot_user_id=BOT).answer is answer


def test_the_pieces():
    assert content_words("ok thanks. what about an advisory board?")[:2] == ["what", "about"]
    assert is_question(["and", "to", "the", "us", "?"]) and not is_question(["the", "seminar", "moved"])
    assert security_terms("can someone tell us?") == []  # "us" counts only as the capitals US
    assert "US" not in security_terms("ask us") and security_terms("export to the US") == ["export", "us"]


def test_the_labelled_set_is_big_enough_and_the_held_out_part_is_answered_precisely():
    data = yaml.safe_load(LABELS.read_text(encoding="utf-8"))
    assert len(data["holdout"]) + len(data["tune"]) >= 60 and len(data["holdout"]) >= 30
    wrong = []
    for item in data["holdout"]:
        text = item["text"].replace("<@BOT>", f"<@{BOT}>")
        if item["kind"] == "reply":
            author = ASKER if item["author"] == "asker" else "U0OTHER"
            said = decide_thread_reply(text, author=author, askers=(ASKER,), bot_user_id=BOT).answer
        else:
            said = decide_channel_message(text, bot_user_id=BOT).answer
        if said and item["expect"] == "quiet":
            wrong.append(item["id"])
    assert wrong == []  # no wrong public replies on the held-out part
