"""Block Kit for partner pre-screening, built from ``bot.screening`` records. Pure: no Slack imports.

The result is one message: a header block with the rating's emoji and headline, and an
attachment whose colour bar is the rating's colour, holding the matches (each with its list and
source link), the reasons with their citations, the next steps, the case (its reference, or a
button to open one), the disclaimer and the buttons. Everything from outside (the organisation,
list entries, the user's notes) goes through ``escape_mrkdwn``; every builder stays within
Slack's limits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.screening import HEADLINES, PartnerQuery, Reason, Screening, ScreeningRules
from bot.slack.blocks import (
    MAX_BUTTON_VALUE,
    MAX_METADATA_CHARS,
    MAX_SECTION_CHARS,
    button,
    context_block,
    escape_mrkdwn,
    fit_escaped,
    header_block,
    link,
    plain_text,
    section_block,
    truncate,
    user_mention,
)

ACTION_OPEN_CASE = "trbot_prescreen_open_case"
ACTION_NEW_SCREEN = "trbot_prescreen_new"
ACTION_ROUTE_SCREEN = "trbot_prescreen_route_screen"
ACTION_ROUTE_GUIDANCE = "trbot_prescreen_route_guidance"
VIEW_PRESCREEN = "trbot_prescreen"
SHORTCUT_PRESCREEN = "trbot_prescreen_shortcut"
RESULT_ACTIONS_BLOCK = "trbot_prescreen_actions"
ROUTE_ACTIONS_BLOCK = "trbot_prescreen_route"

# The modal's inputs: block id = action id.
FIELD_ORGANISATION = "organisation"
FIELD_COUNTRY = "country"
FIELD_AREA = "area"
FIELD_KIND = "kind"
FIELD_FUNDING = "funding"
FIELD_NOTES = "notes"
MAX_ORGANISATION_INPUT = 200
MAX_SHORT_INPUT = 200
MAX_NOTES_INPUT = 1000

EMOJI = {"red": "🔴", "amber": "🟠", "green": "🟢"}
COLOURS = {"red": "#d1242f", "amber": "#e8912d", "green": "#2eb67d"}
KIND_LABELS = {
    "watchlist": "List",
    "country": "Country",
    "area": "Research area",
    "collaboration": "Collaboration",
}
MAX_REASON_CHARS = 700
MAX_FALLBACK_CHARS = 300


# -- the result ------------------------------------------------------------------------------


def build_result_message(
    screening: Screening,
    team_name: str,
    *,
    user: str | None = None,
    case_offer: bool = False,
    case_note: str | None = None,
) -> dict[str, Any]:
    """The whole result as ``chat.postMessage`` fields: ``text``, ``blocks`` and ``attachments``.

    Args:
        screening: The result (its ``case`` is the reference of the case opened, if any).
        team_name: Whom the headline tells the researcher to check with.
        user: Who asked (the "Open a case" button carries it, and the click is re-checked).
        case_offer: Show an "Open a case" button (red or amber, as ``cases.prescreen_*`` says).
        case_note: A line about the case in place of the default (e.g. "could not be opened").
    """
    rating = screening.rating
    headline = HEADLINES[rating].replace("{team}", team_name)
    blocks = [header_block(f"{EMOJI[rating]} {headline}"), section_block(_subject(screening.query))]
    detail: list[dict[str, Any]] = []
    detail += [section_block(f":warning: {escape_mrkdwn(warning)}") for warning in screening.warnings]
    detail += _matches_blocks(screening)
    detail += _reasons_blocks(screening.reasons)
    detail += _next_steps_blocks(screening)
    detail += _case_blocks(screening, team_name, case_note)
    detail.append(_actions(screening, user, case_offer))
    detail.append(context_block(escape_mrkdwn(screening.disclaimer)))
    detail = _fit(detail, 50 - len(blocks))
    return {
        "text": build_result_text(screening, team_name),
        "blocks": blocks,
        "attachments": [{"color": COLOURS[rating], "blocks": detail, "fallback": headline}],
    }


def build_result_text(screening: Screening, team_name: str) -> str:
    """The notification text (and what screen readers and old clients show)."""
    headline = HEADLINES[screening.rating].replace("{team}", team_name)
    organisation = truncate(screening.query.organisation, 120)
    text = f"Pre-screen of {organisation}: {headline}"
    if screening.case:
        text += f" (case {screening.case})"
    return escape_mrkdwn(truncate(text, MAX_FALLBACK_CHARS))


def _subject(query: PartnerQuery) -> str:
    parts = [f"*{fit_escaped(query.organisation, 300)}*"]
    for label, value in (("country", query.country), ("area", query.area), ("kind", query.kind)):
        if value:
            parts.append(
                f"{label}: {fit_escaped(value.replace('-', ' ') if label == 'kind' else value, 200)}"
            )
    if query.funding:
        parts.append(f"funding: {fit_escaped(query.funding, 200)}")
    return "Partner pre-screen: " + " · ".join(parts)


def _matches_blocks(screening: Screening) -> list[dict[str, Any]]:
    if not screening.matches:
        return [section_block("*Matches:* none in the lists loaded.")]
    lines = ["*Matches* (best first)"]
    for number, match in enumerate(screening.matches, start=1):
        name = link(match.source_url, match.entry) if match.source_url else f"*{escape_mrkdwn(match.entry)}*"
        strength = "match" if match.strength == "match" else "possible match: check"
        named = (
            "" if match.matched_name == match.entry else f", matched on “{escape_mrkdwn(match.matched_name)}”"
        )
        facts = _details_line(match.details)
        lines.append(
            f"{number}. {name} — list *{escape_mrkdwn(match.list)}*, {strength} ({match.score:.2f}){named}"
            + (f"\n      _{facts}_" if facts else "")
        )
    return _sections(lines)


def _details_line(details: Mapping[str, Any]) -> str:
    """A few of the entry's details (programme, licence policy, risk level, dates), escaped."""
    keys = (
        "source",
        "programme",
        "programs",
        "regime",
        "risk_level",
        "license_policy",
        "license_requirement",
        "date_designated",
        "start_date",
        "date",
    )
    shown = []
    for key in keys:
        value = details.get(key)
        if value in (None, "", [], {}):
            continue
        if isinstance(value, list | tuple):
            value = "; ".join(str(item) for item in value)
        shown.append(f"{key.replace('_', ' ')}: {truncate(str(value), 160)}")
    return escape_mrkdwn(" · ".join(shown[:4]))


def _reasons_blocks(reasons: tuple[Reason, ...]) -> list[dict[str, Any]]:
    if not reasons:
        return [section_block("*Reasons:* no rule fired.")]
    lines = ["*Reasons*"]
    for reason in reasons:
        marker = {"red": ":red_circle:", "amber": ":large_orange_circle:"}.get(reason.level, ":white_circle:")
        text = fit_escaped(reason.text, MAX_REASON_CHARS)
        lines.append(f"{marker} *{KIND_LABELS[reason.kind]}:* {text}\n      {_citation_line(reason)}")
    return _sections(lines)


def _citation_line(reason: Reason) -> str:
    citation = reason.citation.to_dict()
    if citation["type"] == "watchlist":
        source = (
            link(citation.get("source_url"), "source") if citation.get("source_url") else "no source link"
        )
        entry = escape_mrkdwn(citation["entry"])
        return f"_Source: list {escape_mrkdwn(citation['list'])}, entry “{entry}” ({source})_"
    label = citation["title"] + (f" › {citation['section']}" if citation.get("section") else "")
    return f"_Guidance: {link(citation.get('url'), label)}_"


def _next_steps_blocks(screening: Screening) -> list[dict[str, Any]]:
    lines = ["*Next steps*"]
    for number, step in enumerate(screening.next_steps, start=1):
        cite = ""
        if step.citation:
            label = step.citation.title + (f" › {step.citation.section}" if step.citation.section else "")
            cite = f" ({link(step.citation.url, label)})"
        lines.append(f"{number}. {fit_escaped(step.text, 600)}{cite}")
    return _sections(lines)


def _case_blocks(screening: Screening, team_name: str, note: str | None) -> list[dict[str, Any]]:
    if note:
        return [section_block(f":file_folder: {escape_mrkdwn(note)}")]
    if screening.case:
        return [
            section_block(
                f":file_folder: Case *{escape_mrkdwn(screening.case)}* is open with the "
                f"{escape_mrkdwn(team_name)}, with this result attached: they will follow up. "
                "Quote the reference if you contact them."
            )
        ]
    return []


def _actions(screening: Screening, user: str | None, case_offer: bool) -> dict[str, Any]:
    elements = []
    if case_offer and not screening.case:
        value = encode_query_value(screening.query, user)
        elements.append(
            button(":file_folder: Open a case with the team", ACTION_OPEN_CASE, value, style="primary")
        )
    elements.append(button(":mag: Screen another partner", ACTION_NEW_SCREEN, json.dumps({"u": user or ""})))
    return {"type": "actions", "block_id": RESULT_ACTIONS_BLOCK, "elements": elements}


def _sections(lines: list[str]) -> list[dict[str, Any]]:
    """Lines joined into as few sections as fit Slack's 3,000 characters (a line is never split)."""
    blocks: list[dict[str, Any]] = []
    current = ""
    for line in lines:
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > MAX_SECTION_CHARS and current:
            blocks.append(section_block(current))
            current = line
        else:
            current = candidate
    if current:
        blocks.append(section_block(current))
    return blocks


def _fit(blocks: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` blocks, keeping the last two (the buttons and the disclaimer)."""
    if len(blocks) <= limit:
        return blocks
    return blocks[: limit - 3] + [context_block("… (more reasons in the case)")] + blocks[-2:]


# -- button values ---------------------------------------------------------------------------


def encode_query_value(query: PartnerQuery, user: str | None) -> str:
    """A button value with what re-running the screen needs: the query and who asked (JSON)."""
    data = {"u": user or "", **{k: v for k, v in _short(query).items() if v}}
    encoded = json.dumps(data, ensure_ascii=False)
    while len(encoded) > MAX_BUTTON_VALUE and data.get("n"):
        data["n"] = data["n"][: max(0, len(data["n"]) - (len(encoded) - MAX_BUTTON_VALUE) - 10)] or None
        data = {k: v for k, v in data.items() if v}
        encoded = json.dumps(data, ensure_ascii=False)
    return encoded


def decode_query_value(raw: str) -> tuple[PartnerQuery, str]:
    """The query and the asking user from a button value; ValueError if it is not one of ours."""
    data = json.loads(raw or "{}")
    if not isinstance(data, dict) or not isinstance(data.get("o"), str):
        raise ValueError("not a pre-screen button value")
    query = PartnerQuery(
        data["o"],
        country=data.get("c"),
        area=data.get("a"),
        kind=data.get("k"),
        funding=data.get("f"),
        notes=data.get("n"),
    )
    return query, str(data.get("u") or "")


def _short(query: PartnerQuery) -> dict[str, str | None]:
    return {
        "o": query.organisation,
        "c": query.country,
        "a": query.area,
        "k": query.kind,
        "f": query.funding,
        "n": query.notes,
    }


def encode_guidance_value(text: str, user: str, thread_ts: str | None) -> str:
    """The "Answer from guidance" button: the message to answer, who sent it, and its thread."""
    data = {"u": user, "t": text[:1500], "th": thread_ts}
    return json.dumps({k: v for k, v in data.items() if v}, ensure_ascii=False)[:MAX_BUTTON_VALUE]


def decode_guidance_value(raw: str) -> tuple[str, str, str | None]:
    data = json.loads(raw or "{}")
    if not isinstance(data, dict) or not isinstance(data.get("t"), str):
        raise ValueError("not a guidance button value")
    return data["t"], str(data.get("u") or ""), data.get("th")


# -- asking when unsure ----------------------------------------------------------------------


def build_route_question(query: PartnerQuery, text: str, user: str, thread_ts: str | None) -> dict[str, Any]:
    """ "Do you want me to screen X, or answer from the guidance?" with the two buttons."""
    organisation = fit_escaped(query.organisation, 200)
    blocks = [
        section_block(
            f"Do you want me to *pre-screen* “{organisation}” as a prospective partner, or to "
            "*answer your message from the guidance*?"
        ),
        {
            "type": "actions",
            "block_id": ROUTE_ACTIONS_BLOCK,
            "elements": [
                button(
                    ":mag: Screen this partner",
                    ACTION_ROUTE_SCREEN,
                    encode_query_value(query, user),
                    "primary",
                ),
                button(
                    ":books: Answer from guidance",
                    ACTION_ROUTE_GUIDANCE,
                    encode_guidance_value(text, user, thread_ts),
                ),
            ],
        },
    ]
    return {"text": f"Pre-screen {organisation}, or answer from the guidance?", "blocks": blocks}


def build_chosen_text(choice: str, organisation: str | None = None) -> dict[str, Any]:
    """What replaces the two-button question once one is clicked."""
    if choice == "screen":
        text = f":mag: Pre-screening “{fit_escaped(organisation or '', 200)}”…"
    else:
        text = ":books: Answering from the guidance…"
    return {"text": text, "blocks": [section_block(text)]}


def build_not_yours_text() -> str:
    return "Those buttons belong to the person who asked; send me your own message to screen a partner."


def build_notice(text: str) -> dict[str, Any]:
    """A short message (an error the user can fix, a note)."""
    return {
        "text": escape_mrkdwn(truncate(text, MAX_FALLBACK_CHARS)),
        "blocks": [section_block(fit_escaped(text, 2900))],
    }


# -- the modal -------------------------------------------------------------------------------


def build_prescreen_modal(
    rules: ScreeningRules | None,
    *,
    private_metadata: str = "",
    organisation: str | None = None,
    team_name: str = "Research Security Team",
) -> dict[str, Any]:
    """The /prescreen (and global shortcut) form: organisation, country, research area, kind of
    collaboration, funding source and notes; only the organisation is required."""
    kinds = rules.kinds.values() if rules else ()
    kind_options = [
        {"text": plain_text(kind.label[:1].upper() + kind.label[1:], 75), "value": kind.id} for kind in kinds
    ]
    blocks = [
        section_block(
            "A first screen of a prospective partner against the watchlists and "
            f"{escape_mrkdwn(team_name)}'s rules. The result comes to you in a direct message; "
            "it is not a clearance."
        ),
        _input(
            FIELD_ORGANISATION,
            "Organisation",
            "e.g. Harbin Institute of Technology",
            MAX_ORGANISATION_INPUT,
            optional=False,
            initial=organisation,
        ),
        _input(FIELD_COUNTRY, "Country", "e.g. China", MAX_SHORT_INPUT),
        _input(FIELD_AREA, "Research area", "e.g. battery chemistry", MAX_SHORT_INPUT),
    ]
    if kind_options:
        blocks.append(
            {
                "type": "input",
                "block_id": FIELD_KIND,
                "optional": True,
                "label": plain_text("Kind of collaboration", 2000),
                "element": {
                    "type": "static_select",
                    "action_id": FIELD_KIND,
                    "placeholder": plain_text("Choose one", 150),
                    "options": kind_options,
                },
            }
        )
    blocks.append(
        _input(FIELD_FUNDING, "Funding source", "e.g. the partner, UKRI, a company", MAX_SHORT_INPUT)
    )
    blocks.append(
        _input(
            FIELD_NOTES,
            "Notes",
            "Anything else: what you would share, who is involved",
            MAX_NOTES_INPUT,
            multiline=True,
        )
    )
    return {
        "type": "modal",
        "callback_id": VIEW_PRESCREEN,
        "private_metadata": private_metadata[:MAX_METADATA_CHARS],
        "title": plain_text("Screen a partner", 24),
        "submit": plain_text("Screen", 24),
        "close": plain_text("Cancel", 24),
        "blocks": blocks,
    }


def _input(
    block_id: str,
    label: str,
    placeholder: str,
    max_length: int,
    *,
    optional: bool = True,
    multiline: bool = False,
    initial: str | None = None,
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": block_id,
        "max_length": max_length,
        "placeholder": plain_text(placeholder, 150),
    }
    if multiline:
        element["multiline"] = True
    if initial:
        element["initial_value"] = truncate(initial, max_length)
    return {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": plain_text(label, 2000),
        "element": element,
    }


def query_from_view(view: Mapping[str, Any]) -> PartnerQuery:
    """The modal's values as a query (empty fields are None)."""
    values = (view.get("state") or {}).get("values") or {}

    def value(field: str) -> str | None:
        element = (values.get(field) or {}).get(field) or {}
        if element.get("type") == "static_select":
            return ((element.get("selected_option") or {}).get("value")) or None
        text = element.get("value")
        return text.strip() or None if isinstance(text, str) else None

    return PartnerQuery(
        value(FIELD_ORGANISATION) or "",
        country=value(FIELD_COUNTRY),
        area=value(FIELD_AREA),
        kind=value(FIELD_KIND),
        funding=value(FIELD_FUNDING),
        notes=value(FIELD_NOTES),
    )


def build_submitted_view(organisation: str) -> dict[str, Any]:
    """What the modal shows once submitted: the result is on its way to the user's DMs."""
    return {
        "type": "modal",
        "title": plain_text("Screen a partner", 24),
        "close": plain_text("Close", 24),
        "blocks": [
            section_block(
                f":mag: Screening “{fit_escaped(organisation, 200)}”: the result will be in your direct "
                "messages with me in a moment."
            )
        ],
    }


def build_case_opened_text(ref: str, team_name: str, requester: str | None = None) -> dict[str, Any]:
    text = (
        f":file_folder: Case *{escape_mrkdwn(ref)}* is open with the {escape_mrkdwn(team_name)}, with the "
        "screening attached: they will follow up. Quote the reference if you contact them."
    )
    if requester:
        text = f"{user_mention(requester)}: {text}"
    return {"text": f"Case {escape_mrkdwn(ref)} opened", "blocks": [section_block(text)]}
