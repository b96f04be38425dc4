"""Block Kit for trbot's replies, built from the core's records. Pure: no Slack imports.

Everything from outside (the guidance text, the user's question, titles) goes through
``escape_mrkdwn``; only links built here use Slack's ``<url|label>`` markup. Every builder stays
within Slack's limits (50 blocks, 3,000 characters a section, 2,000 a button value), shortening
long content with "…" and dropping trailing passages rather than failing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.config import InstitutionSettings
from bot.records import Answer, AnswerStatus, Citation, Confidence, Contact, Passage
from bot.slack.blocks import (
    ELLIPSIS,
    MAX_BLOCKS,
    MAX_METADATA_CHARS,
    MAX_SECTION_CHARS,
    button,
    contact_line,
    context_block,
    escape_mrkdwn,
    fit_escaped,
    fit_mrkdwn,
    header_block,
    link,
    plain_from_markdown,
    plain_text,
    section_block,
    truncate,
    user_mention,
)

# Slack documents no limit on a message's total size, but very long messages are collapsed
# and hard to read: passages beyond this budget are dropped (the sources still list them).
MAX_PASSAGE_CHARS_TOTAL = 12_000
MAX_FALLBACK_CHARS = 300
MAX_ECHO_CHARS = 300
MAX_TITLE_CHARS = 120

ACTION_HELPFUL = "trbot_feedback_helpful"
ACTION_NOT_HELPFUL = "trbot_feedback_not_helpful"
ACTION_SHARE = "trbot_share"
ACTION_TALK = "trbot_talk_to_person"  # opens a case for the research-security team (bot.slack.cases)
VIEW_FEEDBACK = "trbot_feedback_reason"
REASON_BLOCK = "reason"
REASON_ACTION = "reason"
MAX_REASON_CHARS = 1000

_CONFIDENCE_TEXT = {
    Confidence.HIGH: "*High* — the guidance closely matches your question.",
    Confidence.MEDIUM: "*Medium* — check that the passages fit your situation.",
    Confidence.LOW: "*Low* — the guidance may only partly answer this.",
    Confidence.NONE: "*None* — nothing in the guidance matches.",
}


@dataclass(frozen=True)
class ActionValue:
    """What an answer's buttons act on: the stored answer (``StateStore.save_answer``).

    A button's value holds only ``answer_id``; the rest is filled in from the state database by
    ``bot.slack.answers.resolve_action_value``, never from the payload, so a forged or edited
    value cannot change what is shared or stored.
    """

    answer_id: str
    question: str = ""
    chunk_ids: tuple[str, ...] = ()
    context: str | None = None
    thread_ts: str | None = None
    user: str = ""  # who asked
    channel: str = ""  # where it was answered


MAX_ANSWER_ID_CHARS = 64


# -- action values ---------------------------------------------------------------------------


def encode_action_value(answer_id: str) -> str:
    """A button value: the stored answer's short id, as JSON (``{"a": "<id>"}``)."""
    return json.dumps({"a": answer_id}, separators=(",", ":"))


def decode_action_value(raw: str) -> ActionValue:
    """The answer id in a button value (only ``answer_id`` is set); ValueError if it is not one."""
    data = json.loads(raw)
    answer_id = data.get("a") if isinstance(data, dict) else None
    if not isinstance(answer_id, str) or not 0 < len(answer_id) <= MAX_ANSWER_ID_CHARS:
        raise ValueError("not a trbot action value")
    return ActionValue(answer_id)


# -- answers ---------------------------------------------------------------------------------


def build_answer_blocks(
    answer: Answer,
    *,
    answer_id: str | None = None,
    shareable: bool = False,
    echo_question: bool = False,
    shared_by: str | None = None,
) -> list[dict[str, Any]]:
    """Block Kit for an answer: cited passages, sources, confidence and feedback buttons.

    Args:
        answer: The core's answer (a "not covered" or off-topic answer gets the honest reply).
        answer_id: The stored answer's id (``StateStore.save_answer``): the only thing the
            buttons carry. None: no buttons (a shared copy, or the answer could not be stored).
        shareable: Add a "Share in channel" button (for answers only the asker can see).
        echo_question: Repeat the question at the top (slash commands, where it is not visible).
        shared_by: The user id who shared this answer publicly, shown with the question.
    """
    head = _question_blocks(answer.question, echo_question, shared_by)
    actions = [_actions_block(encode_action_value(answer_id), shareable)] if answer_id else []
    if answer.status is not AnswerStatus.ANSWERED or not answer.passages:
        return head + _not_covered_body(answer) + actions
    return _fit_answer(answer, head, actions)


def build_answer_text(answer: Answer) -> str:
    """Short plain fallback text (notifications, screen readers) for an answer; escaped mrkdwn."""
    if answer.status is not AnswerStatus.ANSWERED or not answer.passages:
        return fit_escaped(answer.message, MAX_FALLBACK_CHARS)
    first = answer.passages[0]
    quote = plain_from_markdown(first.highlights[0] if first.highlights else first.text)
    citation = _citation_or_none(answer, first.citation)
    source = f" [{first.citation}] {citation.title}" if citation else ""
    return fit_escaped(f"{answer.message}{source}: “{' '.join(quote.split())}”", MAX_FALLBACK_CHARS)


def _question_blocks(question: str, echo: bool, shared_by: str | None) -> list[dict[str, Any]]:
    if not echo and not shared_by:
        return []
    asked = fit_escaped(" ".join(question.split()), MAX_ECHO_CHARS, _escaped_plain)
    who = f"{user_mention(shared_by)} shared an answer to" if shared_by else "You asked"
    return [context_block(f"{who}: _{asked}_" if asked else who)]


# Slack's formatting characters and harmless look-alikes: an echoed question carries none of the
# asker's formatting (bold, italics, strike-through, code), so a public share shows it as typed.
_LOOK_ALIKES = str.maketrans({"*": "∗", "_": "ˍ", "~": "∼", "`": "ˋ"})


def neutralise_mrkdwn(text: str) -> str:
    """``text`` with ``*``, ``_``, ``~`` and backticks (so code fences too) replaced by look-alikes."""
    return text.translate(_LOOK_ALIKES)


def _escaped_plain(text: str) -> str:
    return escape_mrkdwn(neutralise_mrkdwn(text))


def _not_covered_body(answer: Answer) -> list[dict[str, Any]]:
    icons = {AnswerStatus.OFF_TOPIC: ":compass:", AnswerStatus.NOT_ENGLISH: ":speech_balloon:"}
    icon = icons.get(answer.status, ":mag:")
    return [
        section_block(f"{icon} {fit_escaped(answer.message, MAX_SECTION_CHARS - 20)}"),
        context_block(f"Contact: {contact_line(answer.contact)}"),
    ]


def _fit_answer(answer: Answer, head: list[dict], actions: list[dict]) -> list[dict[str, Any]]:
    intro = [section_block(escape_mrkdwn(answer.message))]
    passages = _passages_within_budget(answer.passages)
    while True:
        shown = [p.citation for p in passages]
        tail = _sources_blocks(answer, shown, len(answer.passages) - len(passages))
        tail.append(_footer_block(answer))
        blocks = head + intro + [_passage_block(answer, p) for p in passages] + tail + actions
        if len(blocks) <= MAX_BLOCKS or len(passages) <= 1:
            return blocks[:MAX_BLOCKS]
        passages = passages[: len(passages) - (len(blocks) - MAX_BLOCKS)] or passages[:1]


def _passages_within_budget(passages: Sequence[Passage]) -> list[Passage]:
    kept: list[Passage] = []
    used = 0
    for passage in passages:
        size = min(len(passage.text), MAX_SECTION_CHARS)
        if kept and used + size > MAX_PASSAGE_CHARS_TOTAL:
            break
        kept.append(passage)
        used += size
    return kept


def _passage_block(answer: Answer, passage: Passage) -> dict[str, Any]:
    citation = _citation_or_none(answer, passage.citation)
    title = truncate(citation.title, 80) if citation else ""
    lead = f"*[{passage.citation}]*" + (f" _{escape_mrkdwn(title)}_" if title else "")
    text = plain_from_markdown(passage.text)
    segments = highlight_segments(text, [plain_from_markdown(h) for h in passage.highlights])
    budget = MAX_SECTION_CHARS - len(lead) - 1
    body = fit_escaped(text, budget, lambda cut: _quote(_cut_segments(segments, len(cut))))
    return section_block(f"{lead}\n{body}")


def highlight_segments(text: str, highlights: Sequence[str]) -> list[tuple[str, bool]]:
    """Split ``text`` into (piece, is_highlight) pairs; highlights found in order, missing ones skipped."""
    segments: list[tuple[str, bool]] = []
    position = 0
    for highlight in highlights:
        start = text.find(highlight, position) if highlight.strip() else -1
        if start == -1:
            continue
        if start > position:
            segments.append((text[position:start], False))
        segments.append((highlight, True))
        position = start + len(highlight)
    if position < len(text):
        segments.append((text[position:], False))
    return segments


def _cut_segments(segments: list[tuple[str, bool]], length: int) -> list[tuple[str, bool]]:
    """The segments shortened to ``length`` characters of text in all, ending with "…" if cut."""
    total = sum(len(piece) for piece, _ in segments)
    if length >= total:
        return segments
    kept: list[tuple[str, bool]] = []
    left = max(length - len(ELLIPSIS), 0)
    for piece, bold in segments:
        if len(piece) >= left:
            kept.append((piece[:left].rstrip(), bold))
            break
        kept.append((piece, bold))
        left -= len(piece)
    kept.append((ELLIPSIS, False))
    return kept


def _quote(segments: list[tuple[str, bool]]) -> str:
    """Render segments as a mrkdwn block quote, highlights in bold."""
    text = "".join(_bold(escape_mrkdwn(piece)) if bold else escape_mrkdwn(piece) for piece, bold in segments)
    lines: list[str] = []
    for line in (line.strip() for line in text.splitlines()):
        if line or (lines and lines[-1]):  # keep one blank line between paragraphs
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(f">{line}" for line in lines) or ">"


def _bold(text: str) -> str:
    # mrkdwn bold cannot span lines and needs the asterisks next to non-space characters.
    out = []
    for line in text.split("\n"):
        core = line.strip().replace("*", "∗")
        if not core:
            out.append(line)
            continue
        lead = line[: len(line) - len(line.lstrip())]
        trail = line[len(line.rstrip()) :]
        out.append(f"{lead}*{core}*{trail}")
    return "\n".join(out)


def _sources_blocks(answer: Answer, shown: list[int], dropped: int) -> list[dict[str, Any]]:
    lines = [_source_line(c) for c in answer.citations if c.number in shown]
    if dropped:
        lines.append(f"_{dropped} more passage{'s' if dropped > 1 else ''} not shown to keep this short._")
    blocks, current = [], "*Sources*"
    for line in lines:
        if len(current) + 1 + len(line) > MAX_SECTION_CHARS:
            blocks.append(section_block(current))
            current = ""
        current = f"{current}\n{line}" if current else line
    blocks.append(section_block(current))
    return blocks


def _source_line(citation: Citation) -> str:
    name = truncate(citation.title, MAX_TITLE_CHARS)
    if citation.section and citation.section != citation.title:
        name = f"{name} — {truncate(citation.section, MAX_TITLE_CHARS)}"
    line = f"[{citation.number}] {link(citation.url, name)}"
    if not citation.url:
        line += f" ({escape_mrkdwn(truncate(citation.path, MAX_TITLE_CHARS))})"
    if citation.last_reviewed:
        line += f" · last reviewed {escape_mrkdwn(truncate(citation.last_reviewed, 40))}"
    if citation.stale:
        line += " · :warning: _overdue for review: check it is still current_"
    return fit_mrkdwn(line, 600)


def _footer_block(answer: Answer) -> dict[str, Any]:
    confidence = _CONFIDENCE_TEXT.get(answer.confidence, escape_mrkdwn(str(answer.confidence)))
    institution = escape_mrkdwn(answer.contact.institution)
    return context_block(
        f"Confidence: {confidence}\n"
        f"These are quotes from {institution}'s guidance, not legal advice. "
        f"For a decision on your case, contact {contact_line(answer.contact)}"
    )


def _actions_block(value: str, shareable: bool) -> dict[str, Any]:
    elements = [
        button(":thumbsup: Helpful", ACTION_HELPFUL, value),
        button(":thumbsdown: Not helpful", ACTION_NOT_HELPFUL, value),
        button(":raising_hand: Talk to a person", ACTION_TALK, value),
    ]
    if shareable:
        elements.append(button(":loudspeaker: Share in channel", ACTION_SHARE, value, style="primary"))
    return {"type": "actions", "block_id": "trbot_answer_actions", "elements": elements}


def _citation_or_none(answer: Answer, number: int) -> Citation | None:
    return next((c for c in answer.citations if c.number == number), None)


# -- other replies ---------------------------------------------------------------------------


def build_error_blocks(reference_id: str, contact: Contact) -> list[dict[str, Any]]:
    """A short apology for an internal error, with a reference id to quote to the team."""
    return [
        section_block(build_error_text(reference_id)),
        context_block(f"If it keeps happening: {contact_line(contact)}"),
    ]


def build_error_text(reference_id: str) -> str:
    ref = escape_mrkdwn(reference_id)
    return (
        ":warning: Sorry, something went wrong on my side and I couldn't answer that. "
        f"Please try again in a minute. Reference: `{ref}`"
    )


def build_notice_text(message: str) -> str:
    """A short message to the user (e.g. why a question cannot be asked), escaped."""
    return fit_escaped(message, MAX_SECTION_CHARS)


def build_channel_off_text(command: str) -> str:
    return (
        "I don't answer questions in this channel. Send me a direct message, "
        f"or use `{escape_mrkdwn(command)} your question` for a private answer."
    )


def build_usage_text(command: str, contact: Contact) -> str:
    cmd = escape_mrkdwn(command)
    return (
        f"Ask a research-security question, e.g. `{cmd} do I need an export licence to present "
        f"at a conference abroad?` Only you will see the answer. Contact: {contact_line(contact)}"
    )


def build_progress_text() -> str:
    return ":hourglass_flowing_sand: Looking that up in the guidance…"


def build_answer_expired_text(days: float) -> str:
    """A button on an answer the bot no longer keeps (or never made)."""
    return (
        f"I no longer have that answer (answers are kept for {days:g} days). Please ask the question again."
    )


_SHARE_REFUSED = {
    "not_asker": "Only the person who asked can share this answer. You can ask the question yourself.",
    "other_channel": "This answer can only be shared where it was asked.",
    "channel_off": "Sharing answers is turned off in this channel.",
}


def build_share_refused_text(why: str) -> str:
    """Why a "Share in channel" click did nothing: ``not_asker``, ``other_channel`` or ``channel_off``."""
    return _SHARE_REFUSED[why]


def build_feedback_thanks_text() -> str:
    return "Thanks for the feedback; it helps the team improve the guidance."


def build_feedback_modal(private_metadata: str, team_name: str) -> dict[str, Any]:
    """The "Not helpful" modal: an optional reason, sent to the research-security team."""
    return {
        "type": "modal",
        "callback_id": VIEW_FEEDBACK,
        "private_metadata": private_metadata[:MAX_METADATA_CHARS],
        "title": plain_text("Feedback", 24),
        "submit": plain_text("Send", 24),
        "close": plain_text("Skip", 24),
        "blocks": [
            section_block(
                f"Thanks. What was missing or wrong? Your note goes to the {escape_mrkdwn(team_name)}."
            ),
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "optional": True,
                "label": plain_text("Reason (optional)", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_ACTION,
                    "multiline": True,
                    "max_length": MAX_REASON_CHARS,
                },
            },
        ],
    }


def build_feedback_thanks_view() -> dict[str, Any]:
    return {
        "type": "modal",
        "title": plain_text("Feedback", 24),
        "close": plain_text("Close", 24),
        "blocks": [section_block(build_feedback_thanks_text())],
    }


def build_home_view(institution: InstitutionSettings, *, command: str, examples: Sequence[str] = ()) -> dict:
    """The App Home tab: what the bot does and does not do, examples, escalation and the team's contact."""
    contact = institution.contact()
    name = escape_mrkdwn(institution.name)
    cmd = escape_mrkdwn(command)
    questions = examples or DEFAULT_EXAMPLES
    return {
        "type": "home",
        "blocks": [
            header_block("Trusted Research assistant"),
            section_block(
                f"I answer research-security (Trusted Research) questions by quoting {name}'s own "
                "guidance, with numbered citations and links to the sources."
            ),
            section_block(
                "*How to ask*\n"
                "• Send me a direct message.\n"
                "• Mention me in a channel: I reply in a thread, and you can ask follow-ups there "
                "without mentioning me again.\n"
                f"• Type `{cmd} your question` for an answer only you can see, which you can then share."
            ),
            section_block(
                "*What I don't do*\n"
                "• I don't give legal advice, approve collaborations or decide export-licence questions.\n"
                "• I don't guess: if the guidance doesn't cover your question, I say so and point you "
                "to the team.\n"
                "• I only read messages that mention me, direct messages, threads I've answered and "
                "channels an admin has set me to watch."
            ),
            section_block("*Example questions*\n" + "\n".join(f"• _{escape_mrkdwn(q)}_" for q in questions)),
            section_block(
                "*When you need a person*\n"
                f"For a decision on your case, or when my answer doesn't help, contact the "
                f"{escape_mrkdwn(institution.team_name)}: {contact_line(contact)}. "
                "Use *Not helpful* under an answer to tell the team what was missing."
            ),
            context_block("Answers quote the guidance; check the cited source and its last-reviewed date."),
        ],
    }


DEFAULT_EXAMPLES = (
    "Do I need an export licence to take my laptop to a conference abroad?",
    "What due diligence do I need before partnering with an overseas university?",
    "Is there an exemption from export controls for basic scientific research?",
    "Can a visiting researcher from abroad access our lab's data?",
)
