"""Does a question read as English? The embedding model and the guidance are English only, so a
question in another language gets a plain "I read English" rather than a wrong verdict.

Two cheap checks, no model: the script (mostly letters outside the Latin alphabet: Arabic,
Chinese, Cyrillic, ...) and, for Latin-script text, function words: a question with several
French, Spanish, German, Portuguese, Italian or Dutch function words and fewer English ones is
not English. Names in other languages ("Universidad de Buenos Aires") in an English sentence
do not trip it, since the English function words around them outnumber them.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")

ENGLISH = frozenset(
    """a an the and or but if of to in on at for with from by about as is are was were be been am
    do does did done have has had can could should would will shall may might must not no yes
    i me my we our you your he she it its they them their this that these those what which who
    whom whose when where why how there here than then so any some all each every into out up
    over under after before also just only very too more most other such own same both either
    neither nor please thanks hi hello is isn't don't can't won't i'm it's what's""".split()
)

FOREIGN = (
    frozenset(
        # French
        """le la les un une des du de d l au aux et ou est sont je tu il elle nous vous ils elles mon
    ma mes ton ta tes son sa ses notre votre leur pour dans avec sur sans par que qui quoi ce cette
    ces pas ne être avoir faire besoin puis-je dois peux
    """
        # Spanish / Portuguese / Italian
        """el los las una unos unas del al y o es son yo tú él ella nosotros ellos mi mis tu tus su sus
    para por con sin sobre que qué cómo cuál dónde necesito puedo debo está están hay um uma os as
    do da dos das no na nos nas em eu meu minha seu sua é são preciso posso devo il lo gli della
    delle di che per con sono posso devo ho
    """
        # German / Dutch
        """der die das den dem des ein eine einen einem einer und oder ist sind ich du er sie wir ihr
    mein meine dein sein ihre unser für mit auf zu von bei nach aus wie was wer wo warum kann muss
    darf brauche nicht kein keine um het een en van voor met op te zijn ik je mijn wij moet mag
    """.split()
    )
    - ENGLISH
)


def latin_share(text: str) -> float:
    """Share of the letters of ``text`` that are Latin-alphabet letters (1.0 when it has none)."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 1.0
    return sum("LATIN" in unicodedata.name(ch, "") for ch in letters) / len(letters)


def reads_as_english(text: str) -> bool:
    """Whether the question looks English enough for the model to read it.

    Not English: under half of its letters are Latin; or, with at least four words, at least two
    function words of another common European language and more of them than English ones.
    """
    if latin_share(text) < 0.5:
        return False
    tokens = [w.lower().replace("’", "'") for w in _WORD.findall(text)]
    if len(tokens) < 4:
        return True
    parts = [p for w in tokens for p in re.split(r"['-]", w) if p]
    english = sum(w in ENGLISH for w in tokens)
    foreign = sum(p in FOREIGN for p in parts)
    return not (foreign >= 2 and foreign > english)
