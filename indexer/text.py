"""The one tokenizer shared by documents and queries, and a sentence splitter."""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
# Sentence ends: . ! ? followed by space and an upper-case letter, digit, quote or bullet;
# also line breaks between list items. Abbreviations such as "e.g." are not split because
# a lower-case letter follows them.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9*•-])|\n+")
# A line break inside a paragraph is only wrapping, unless a list item or a blank line follows.
_WRAPPED_LINE = re.compile(r"(?<!\n)\n(?![ \t]*(?:[-*•>|]|\d+[.)])\s|[ \t]*\n)")

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves i'm i've i'd it's don't can't
    please thanks hi hello""".split()
)


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lower-case word tokens, with stop words kept and nothing stemmed."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def tokenize(text: str) -> list[str]:
    """Tokens for BM25: lower-case words, stop words removed, Snowball-stemmed.

    Hyphenated and possessive forms are split into their parts ("dual-use" gives
    "dual" and "use"), so queries match however a researcher writes them.
    """
    parts = [part for word in words(text) for part in re.split(r"[-']", word) if part]
    kept = [part for part in parts if part not in STOP_WORDS and not (len(part) == 1 and part.isalpha())]
    return _stemmer().stemWords(kept)


def split_sentences(text: str) -> list[str]:
    """Split a passage into sentences and list items, each stripped, none empty."""
    pieces = _SENTENCE_END.split(_WRAPPED_LINE.sub(" ", text))
    return [piece.strip() for piece in pieces if piece and piece.strip()]
