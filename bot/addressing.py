"""Is a message a research-security question addressed to the bot? Decided before anything is shown.

Two places need it, and both must be precise: a wrong reply in a public thread or channel is worse
than a missed one (the asker can always @mention the bot).

- A reply in a thread the bot answered (``decide_thread_reply``): answered if it mentions the bot;
  otherwise only if it comes from someone who asked the bot in that thread, mentions nobody else,
  is not just thanks or an acknowledgement, and is a question or a request ("what about China?",
  "tell me more about the exemption"), not social talk ("are we still on for lunch?").
- A top-level message in a channel set to ``all`` (``decide_channel_message``): answered only if it
  is a question or request, mentions nobody else, and uses research-security vocabulary. The
  listener then also requires the answerer to find the guidance relevant (status ``answered``).

Plain rules, no Slack imports; measured on ``eval/thread-replies.yaml`` by
``scripts/eval_addressing.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Slack markup: <@U123>, <@U123|name>, <!here>, <!subteam^S123|@team>, <#C123|name>, <https://...|...>
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_BROADCAST = re.compile(r"<!(?:here|channel|everyone|subteam\^[A-Z0-9]+)(?:\|[^>]*)?>")
_OTHER_MARKUP = re.compile(r"<[^>\s]+(?:\|([^>]*))?>")
_EMOJI_CODE = re.compile(r":[a-z0-9_+\-']+:")
_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")

# Words that, alone or together, only acknowledge ("thanks", "ok great", "got it, cheers").
_ACK_WORDS = frozenset(
    """
    thanks thank thx ty tx cheers ta thankyou many much so very a lot you again lots
    ok okay k kk okey cool great brilliant perfect nice awesome excellent amazing lovely super fab
    fantastic wonderful good helpful useful sure fine yes yep yeah yup no nope nah right alright
    lol haha hahaha lmao rofl heh hehe wow oh ah aha hmm noted understood gotcha got it that that's
    thats makes sense clear all exactly what needed i needed just one will do sounds appreciated
    much appreciated worries problem np welcome 1 agreed agree indeed true fair enough
    """.split()
)
# Words that open a question or a request to the bot.
_QUESTION_OPENERS = frozenset(
    """
    what which who whom whose when where why how is are was were do does did can could would should
    will shall may might must have has am isn't aren't don't doesn't didn't can't couldn't wouldn't
    shouldn't won't any anything
    """.split()
)
_REQUEST_OPENERS = frozenset(
    "tell explain show give list describe clarify summarise summarize define outline detail".split()
)
# Leading words that connect a follow-up to the thread ("and for Iran?", "also, what about ...").
_CONNECTORS = frozenset("and but so also plus or then ok okay thanks thank cheers great right".split())
# Social talk between people: a question about these is not one for the bot.
_SOCIAL = re.compile(
    r"\b(lunch|coffee|tea|drinks?|pub|dinner|cake|birthday|party|meeting room|book the|booking|"
    r"group meeting|monday'?s meeting|the meeting|catch up|catch-up|weekend|holiday|charger|printer|"
    r"parking|slides|see you|coming to|on for)\b",
    re.IGNORECASE,
)
# Research-security vocabulary (what the guidance is about). Specific on purpose: "funding" or
# "training" alone are everyday words in a research group; "foreign funding" is not.
_SECURITY_TERMS = re.compile(
    r"\b("
    r"export(s|ed|ing)?( control\w*| licen[cs]\w*)?|licen[cs]e[sd]?|licensing|sanction\w*|embargo\w*|"
    r"atas|nsi|national security|investment act|dual[- ]use|military|defen[cs]e|weapon\w*|wmd|nuclear|"
    r"missile\w*|drone\w*|encrypt\w*|cryptograph\w*|firs|foreign influence|interference|espionage|"
    r"entity list|consolidated (screening )?list|end[- ]use\w*|end[- ]user\w*|due diligence|"
    r"trusted research|research security|security team|collaborat\w*|partner\w*|overseas|abroad|"
    r"foreign|international|visiting (researcher|student|academic|professor|scholar)s?|visitors?|"
    r"delegations?|talent (programme|program|plan)s?|intellectual property|ip|patent\w*|"
    r"suspicious|approached|approach from|recruit\w*|elicitation|affiliation\w*|declar\w*|"
    r"conflicts? of interest|"
    r"outside (appointment|interest)s?|honorary|advisory board|funder\w*|foreign fund\w*|"
    r"fund\w* from (a |an |the )?(foreign|overseas)|gifts?|donation\w*|laptop\w*|devices?|phones?|"
    r"data (sharing|transfer|access)|share (my |our )?(data|code|software)|technology transfer|"
    r"controlled|sensitive|classified|vetting|ukri|npsa|ncsc|otsi|hmrc|itar|"
    r"china|chinese|russia\w*|iran\w*|north korea\w*|belarus\w*|syria\w*|cuba\w*|venezuela\w*|"
    r"myanmar|hong kong|shenzhen|beijing|moscow|tehran|india|singapore|united states"
    r")\b",
    re.IGNORECASE,
)
# Acronyms that are everyday words in lower case ("us", "ear"): matched as capitals only.
_SECURITY_ACRONYMS = re.compile(r"\b(US|USA|EAR|IP|IPR|EU)\b")


@dataclass(frozen=True)
class Decision:
    """Whether to answer, and why (a short reason for logs and the evaluation; no message text)."""

    answer: bool
    reason: str


def decide_thread_reply(
    text: str, *, author: str, askers: tuple[str, ...] | list[str], bot_user_id: str | None
) -> Decision:
    """Should the bot answer this reply in a thread it answered?

    Args:
        text: The message as Slack sends it (mentions as ``<@U…>``).
        author: Who wrote it.
        askers: Who asked the bot in this thread (the original asker, and anyone who mentioned it).
        bot_user_id: The bot's user id (a mention of it is always answered).
    """
    if mentions_user(text, bot_user_id):
        return Decision(True, "mentions the bot")
    if addressed_to_others(text, bot_user_id):
        return Decision(False, "addressed to someone else")
    if author not in askers:
        return Decision(False, "not the asker and no mention")
    words = content_words(text)
    if not words:
        return Decision(False, "acknowledgement")
    if not is_question(words):
        return Decision(False, "not a question")
    if _SOCIAL.search(" ".join(words)) and not security_terms(text):
        return Decision(False, "social talk")
    return Decision(True, "follow-up question")


def decide_channel_message(text: str, *, bot_user_id: str | None) -> Decision:
    """Should the bot answer this top-level message in a channel set to ``all``?"""
    if mentions_user(text, bot_user_id):
        return Decision(True, "mentions the bot")
    if addressed_to_others(text, bot_user_id):
        return Decision(False, "addressed to someone else")
    words = content_words(text)
    if not words:
        return Decision(False, "acknowledgement")
    if not is_question(words):
        return Decision(False, "not a question")
    terms = security_terms(text)
    if not terms:
        return Decision(False, "not about research security")
    if _SOCIAL.search(" ".join(words)) and len(terms) < 2:
        return Decision(False, "social talk")
    return Decision(True, "research-security question")


def is_acknowledgement(text: str) -> bool:
    """Only thanks, an acknowledgement, laughter or emoji ("thanks!", "ok 👍", "lol")."""
    return not content_words(text)


# -- the pieces --------------------------------------------------------------------------------


def mentions_user(text: str, user_id: str | None) -> bool:
    return bool(user_id) and any(found == user_id for found in _USER_MENTION.findall(text or ""))


def addressed_to_others(text: str, bot_user_id: str | None) -> bool:
    """Mentions a person other than the bot, a user group, or the whole channel."""
    others = [user for user in _USER_MENTION.findall(text or "") if user != bot_user_id]
    return bool(others) or bool(_BROADCAST.search(text or ""))


def content_words(text: str) -> list[str]:
    """The message's words without Slack markup, emoji, and leading thanks or acknowledgements.

    Empty when the message only acknowledges. A question after thanks ("thanks - and for Iran?")
    keeps its words, and a final "?" is kept as a word of its own.
    """
    plain = _USER_MENTION.sub(" ", text or "")
    plain = _BROADCAST.sub(" ", plain)
    plain = _OTHER_MARKUP.sub(lambda m: f" {m.group(1) or ''} ", plain)
    plain = plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    plain = _EMOJI_CODE.sub(" ", plain.lower())
    words = _WORD.findall(plain.replace("’", "'"))
    if plain.rstrip().endswith("?"):
        words.append("?")
    while words and words[0] in _ACK_WORDS and not _opens_question(words):
        words.pop(0)
    if all(word in _ACK_WORDS for word in words if word != "?") and "?" not in words:
        return []
    return words


def _opens_question(words: list[str]) -> bool:
    return words[0] in _QUESTION_OPENERS and len(words) > 2


def is_question(words: list[str]) -> bool:
    """A question or a request: a final "?", or a question word or request verb first."""
    if not words:
        return False
    if words[-1] == "?":
        return True
    rest = list(words)
    while rest and rest[0] in _CONNECTORS:
        rest.pop(0)
    if not rest:
        return False
    if rest[0] in _QUESTION_OPENERS or rest[0] in _REQUEST_OPENERS:
        return True
    return rest[:2] in (["what", "about"], ["how", "about"], ["what", "if"])


def security_terms(text: str) -> list[str]:
    """The research-security words and phrases in ``text`` (Slack markup aside), lower-case."""
    plain = _OTHER_MARKUP.sub(" ", _BROADCAST.sub(" ", _USER_MENTION.sub(" ", text or "")))
    found = [match.group(0).lower() for match in _SECURITY_TERMS.finditer(plain)]
    return found + [match.group(0).lower() for match in _SECURITY_ACRONYMS.finditer(plain)]
