"""Block Kit primitives and mrkdwn helpers shared by every feature's renderers. Pure: no Slack imports.

Everything from outside (guidance text, user text, titles) goes through ``escape_mrkdwn``; only
links built here use Slack's ``<url|label>`` markup. The helpers keep within Slack's limits
(50 blocks, 3,000 characters a section, 2,000 a button value), shortening with "…".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from bot.records import Contact

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_BUTTON_VALUE = 2000
MAX_BUTTON_LABEL = 75
MAX_HEADER_CHARS = 150
MAX_METADATA_CHARS = 3000
ELLIPSIS = "…"

_SLACK_ID = re.compile(r"[A-Z0-9]{2,}")
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
_SAFE_URL = re.compile(r"(https?|mailto):[^\s<>|]+", re.IGNORECASE)
# Guidance is written in Markdown, which Slack's mrkdwn does not read: keep the words only.
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\([^)\s]+\)")
_MD_STRONG = re.compile(r"\*\*|__")
_MD_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.MULTILINE)
_MD_HEADING = re.compile(r"^#{1,6}[ \t]+", re.MULTILINE)


# -- text helpers ----------------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` so text from outside cannot form links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """Shorten plain text to at most ``limit`` characters, at a word boundary where possible, with "…"."""
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:limit]
    cut = text[: limit - len(ELLIPSIS)]
    space = cut.rfind(" ")
    if space >= len(cut) - 30 and space > 0:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def fit_escaped(text: str, limit: int, render: Callable[[str], str] = escape_mrkdwn) -> str:
    """``render(text)`` shortened until it fits in ``limit`` characters (escaping can lengthen text)."""
    rendered = render(text)
    if len(rendered) <= limit:
        return rendered
    low, high = 0, len(text)
    while low < high:  # the longest prefix whose rendering fits
        mid = (low + high + 1) // 2
        if len(render(truncate(text, mid))) <= limit:
            low = mid
        else:
            high = mid - 1
    return render(truncate(text, low))


def plain_from_markdown(text: str) -> str:
    """Guidance Markdown as plain words: links to their labels, no ``**``/``__``, "•" bullets, no ``#``."""
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_STRONG.sub("", text)
    text = _MD_BULLET.sub(r"\1• ", text)
    return _MD_HEADING.sub("", text)


def link(url: str | None, label: str) -> str:
    """A mrkdwn link ``<url|label>`` with a safe label, or the escaped label alone if the URL is unusable."""
    clean = escape_mrkdwn(label.replace("|", " ").replace(">", " ").replace("<", " ")).strip()
    if not url or not _SAFE_URL.fullmatch(url.strip()):
        return clean
    return f"<{url.strip().replace('&', '&amp;')}|{clean}>"


def user_mention(user_id: str | None) -> str:
    return f"<@{user_id}>" if user_id and _SLACK_ID.fullmatch(user_id) else "someone"


def channel_reference(channel: str) -> str:
    """``<#C123>`` for a channel id, else the escaped name (e.g. "#research-security-help")."""
    return f"<#{channel}>" if _CHANNEL_ID.fullmatch(channel) else escape_mrkdwn(channel)


def contact_line(contact: Contact) -> str:
    """The research-security team's contact details as one mrkdwn line."""
    parts = [
        f"*{escape_mrkdwn(contact.team_name)}*",
        channel_reference(contact.slack_channel) if contact.slack_channel else "",
        link(f"mailto:{contact.email}", contact.email) if contact.email else "",
        link(contact.url, "web page") if contact.url else "",
    ]
    return " · ".join(part for part in parts if part)


# -- block primitives ------------------------------------------------------------------------


def section_block(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit_mrkdwn(text, MAX_SECTION_CHARS)}}


def context_block(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": fit_mrkdwn(text, MAX_SECTION_CHARS)}]}


def header_block(text: str) -> dict[str, Any]:
    return {"type": "header", "text": plain_text(text, MAX_HEADER_CHARS)}


def plain_text(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text, limit), "emoji": True}


def button(label: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    element = {"type": "button", "text": plain_text(label, MAX_BUTTON_LABEL), "action_id": action_id}
    element["value"] = value[:MAX_BUTTON_VALUE]
    if style:
        element["style"] = style
    return element


def fit_mrkdwn(text: str, limit: int) -> str:
    # Already-rendered mrkdwn: cut before any partial entity or link so the markup stays valid.
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    for opener, closer in (("&", ";"), ("<", ">")):
        start = cut.rfind(opener)
        if start != -1 and cut.find(closer, start) == -1:
            cut = cut[:start]
    return cut + ELLIPSIS
