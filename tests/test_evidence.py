"""Evidence selection and key-term coverage (bot/evidence.py): pure, hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from bot.evidence import (
    Candidate,
    ExcerptOptions,
    KeyTerm,
    TermWeights,
    coverage,
    covers,
    importance,
    key_terms,
    names_title,
    respell,
    select_excerpts,
    sentence_spans,
    surface_forms,
    term_set,
    titles,
    without_term,
)
from indexer.chunking import Chunk

FIRS = (
    "The scheme started on 1 July 2025. Most people never need to register.\n\n"
    "Penalties are set out in section 80:\n"
    "- up to 2 years in prison for the political influence tier;\n"
    "- up to 5 years in prison for the enhanced tier.\n\n"
    "It applies to individuals as well as institutions."
)


def chunk(text: str, doc: str = "firs.md", section: str = "Penalties", number: int = 0) -> Chunk:
    return Chunk(f"{doc}#{number}", doc, number, "FIRS", ("FIRS", section), text)


WEIGHTS = TermWeights({"penalti": 2, "fir": 5, "prison": 3, "regist": 4, "scheme": 6, "tier": 3}, 20)


def test_sentence_spans_are_exact_offsets_of_sentences_and_list_items():
    spans = sentence_spans(FIRS)
    pieces = [FIRS[a:b] for a, b in spans]
    assert pieces[0] == "The scheme started on 1 July 2025."
    assert "- up to 2 years in prison for the political influence tier;" in pieces
    assert pieces[-1] == "It applies to individuals as well as institutions."


def test_sentence_spans_survive_wrapped_lines():
    text = "A sentence that is\nwrapped over two lines. And a second one."
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "A sentence that is\nwrapped over two lines.",
        "And a second one.",
    ]


def test_key_terms_drop_generic_words_and_unknown_names_but_keep_acronyms():
    terms = key_terms("Do I really need to register with FIRS at the Universidad de Chile, or GDPR?", WEIGHTS)
    assert [t.term for t in terms] == ["regist", "fir", "gdpr"]
    gdpr = terms[-1]
    assert not gdpr.known and gdpr.weight == pytest.approx(np.log(21 / 0.5))


def test_key_terms_take_the_guidance_spelling_of_a_typo():
    weights = TermWeights({"quantum": 3, "visitor": 2, "content": 4, "spell": 2, "issu": 2}, 10)
    assert [t.term for t in key_terms("quantam vistor consent", weights)] == ["quantum", "visitor", "consent"]
    assert [t.term for t in key_terms("a chemical spill", weights)] == [
        "chemic",
        "spill",
    ]  # short: no vowel swap
    assert [t.term for t in key_terms("human tissue", weights)] == [
        "human",
        "tissu",
    ]  # never the first letter


def test_key_terms_keep_the_title_of_a_law_or_agreement_but_drop_names():
    weights = TermWeights({"act": 3, "arrang": 2, "control": 5, "human": 1}, 10)
    terms = [t.term for t in key_terms("is the Wassenaar Arrangement part of the UK control list?", weights)]
    assert terms[:2] == ["wassenaar", "arrang"]
    terms = [t.term for t in key_terms("storing samples under the Human Tissue Act", weights)]
    assert "tissu" in terms
    assert "wassenaar" not in [t.term for t in key_terms("a visit from Wassenaar University", weights)]


def test_covers_matches_stems_synonyms_and_word_families():
    shown = term_set(["Applicants face imprisonment", "photography of equipment"])
    assert covers("imprison", shown)
    assert covers("penalti", shown)  # a synonym: penalty -> imprisonment
    assert covers("photograph", shown)  # "photographi" starts with it
    assert not covers("gdpr", shown)


def test_coverage_weights_the_terms_found():
    terms = [KeyTerm("penalti", 2.0, True), KeyTerm("plagiar", 6.0, False)]
    shown = term_set(["The penalty for exporting without a licence"])
    assert coverage(terms, shown) == pytest.approx(0.25)
    assert coverage(terms, shown, weights=[0.3, 0.1]) == pytest.approx(0.75)
    assert coverage([], shown) == 1.0


def test_importance_is_how_far_the_question_moves_without_the_term():
    question = np.array([1.0, 0.0])
    masked = np.array([[1.0, 0.0], [0.6, 0.8]])
    assert importance(question, masked) == pytest.approx([1e-4, 0.4])
    assert without_term("What is the penalty for plagiarism?", "plagiar") == "What is the penalty for"


def test_select_excerpts_picks_the_sentences_that_carry_the_terms_with_the_list_lead_in():
    terms = key_terms("what is the FIRS penalty, prison?", WEIGHTS)
    [excerpt] = select_excerpts([Candidate(chunk(FIRS), 1.0, 0.6)], terms, ExcerptOptions(max_excerpts=1))
    assert excerpt.text == FIRS[excerpt.start : excerpt.end]
    assert excerpt.text.startswith("Penalties are set out in section 80:")
    assert "5 years" in excerpt.text and "2 years" in excerpt.text
    assert "1 July 2025" not in excerpt.text


def test_select_excerpts_covers_each_part_from_several_chunks_within_the_budget():
    other = chunk(
        "The enhanced tier covers Iran and Russia. Register within 10 days.", section="Tiers", number=1
    )
    unrelated = chunk(
        "Parking permits are issued by estates. Nothing else here at all.", "parking.md", "Cars", 2
    )
    terms = key_terms("what is the FIRS prison penalty and which tier needs registration?", WEIGHTS)
    options = ExcerptOptions(max_excerpts=3, max_chars=400, min_window_chars=40)
    candidates = [
        Candidate(chunk(FIRS), 1.0, 0.6),
        Candidate(other, 0.8, 0.5),
        Candidate(unrelated, 0.1, 0.1),
    ]
    excerpts = select_excerpts(candidates, terms, options)
    texts = " ".join(e.text for e in excerpts)
    assert "Register within 10 days." in texts and "5 years" in texts
    assert all(e.chunk.doc_id == "firs.md" for e in excerpts)
    assert sum(len(e.text) for e in excerpts) <= 400 and len(excerpts) <= 3
    assert excerpts[0].chunk.chunk_id == "firs.md#0"  # the best-ranked candidate gives the first excerpt


def test_select_excerpts_of_nothing_is_nothing():
    assert select_excerpts([], [KeyTerm("firs", 1.0, True)]) == []


def test_titles_of_laws_are_found_and_matched_as_phrases():
    assert titles("Does the UK Export Control Act apply, or the Human Tissue Act?") == [
        ("export", "control", "act"),
        ("human", "tissu", "act"),
    ]
    assert titles("what does the Act say about Wassenaar?") == []
    assert names_title(("export", "control", "act"), ["It rests on the Export Control Act 2002."])
    assert not names_title(("human", "tissu", "act"), ["Human samples fall under the Act on tissue."])


def test_respell_gives_the_model_the_guidance_spelling_but_leaves_names():
    surface = surface_forms(["Quantum computing and the visitor rules", "Visitors"])
    weights = TermWeights({"quantum": 1, "comput": 1, "visitor": 2, "rule": 1}, 3)
    assert respell("my quantam computing project, and our vistor", weights, surface) == (
        "my quantum computing project, and our visitor"
    )
    assert respell("I met Vistor Petrov", weights, surface) == "I met Vistor Petrov"
