"""The shared tokenizer and the sentence splitter (indexer/text.py)."""

from __future__ import annotations

import pytest

from indexer.text import STOP_WORDS, split_sentences, tokenize, words

# --- tokenize ------------------------------------------------------------------------------------


def test_tokenize_lower_cases_and_drops_stop_words():
    assert tokenize("Do I need an ATAS Certificate?") == ["need", "ata", "certif"]


def test_tokenize_keeps_only_letters_and_digits():
    assert tokenize("ECJU: 17 sectors (2021) — see §3!") == ["ecju", "17", "sector", "2021", "see", "3"]


def test_tokenize_drops_single_letters_but_keeps_single_digits():
    assert tokenize("a b c 5") == ["5"]


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("licences", "licence"),
        ("exporting", "exported"),
        ("exports", "export"),
        ("sanctions", "sanctioned"),
        ("collaborations", "collaborating"),
    ],
)
def test_tokenize_stems_inflections_to_the_same_token(one, other):
    assert tokenize(one) == tokenize(other)


def test_tokenize_splits_hyphenated_words_into_their_parts():
    assert tokenize("dual-use") == ["dual", "use"]
    assert tokenize("dual-use") == tokenize("dual use")


def test_tokenize_splits_possessives_and_drops_the_s():
    assert tokenize("the researcher's laptop") == ["research", "laptop"]


def test_tokenize_reads_a_curly_apostrophe_like_a_straight_one():
    assert tokenize("the researcher\u2019s laptop") == tokenize("the researcher's laptop")


def test_tokenize_gives_a_query_the_same_tokens_as_the_document_text():
    document = "Emailing controlled technology abroad is an export."
    query = "emailing CONTROLLED technology abroad, is it an export?"
    assert set(tokenize(query)) == set(tokenize(document))


def test_tokenize_of_only_stop_words_or_punctuation_is_empty():
    assert tokenize("what is it that you would do?") == []
    assert tokenize("... !!! ---") == []
    assert tokenize("") == []


def test_stop_words_are_lower_case():
    assert all(word == word.lower() for word in STOP_WORDS)


def test_words_keeps_stop_words_and_does_not_stem():
    assert words("Exporting THE dual-use items") == ["exporting", "the", "dual-use", "items"]


# --- split_sentences -----------------------------------------------------------------------------


def test_split_sentences_splits_at_full_stops_question_and_exclamation_marks():
    text = "Check the list. Then apply! Do you need a licence? Ask us."
    assert split_sentences(text) == ["Check the list.", "Then apply!", "Do you need a licence?", "Ask us."]


def test_split_sentences_does_not_split_after_abbreviations_followed_by_lower_case():
    text = "Some transfers, e.g. by email, are exports. Others, i.e. lectures, may be too."
    assert split_sentences(text) == [
        "Some transfers, e.g. by email, are exports.",
        "Others, i.e. lectures, may be too.",
    ]


def test_split_sentences_splits_before_a_number_or_a_quote():
    assert split_sentences('Apply early. 30 days is typical. "Plan ahead," we say.') == [
        "Apply early.",
        "30 days is typical.",
        '"Plan ahead," we say.',
    ]


def test_split_sentences_does_not_split_decimal_numbers():
    assert split_sentences("The threshold is 0.35 for now.") == ["The threshold is 0.35 for now."]


def test_split_sentences_gives_each_list_item_on_its_own():
    text = "Check three things:\n- the partner\n- the funder\n\n* the country"
    assert split_sentences(text) == ["Check three things:", "- the partner", "- the funder", "* the country"]


def test_split_sentences_strips_pieces_and_drops_empty_ones():
    assert split_sentences("  One.   Two.  \n\n\n  ") == ["One.", "Two."]
    assert split_sentences("") == []
    assert split_sentences(" \n \n") == []


def test_split_sentences_keeps_a_soft_wrapped_sentence_whole():
    sentences = split_sentences("Sending technical data by email\nto a colleague abroad is an export.")
    assert [" ".join(sentence.split()) for sentence in sentences] == [
        "Sending technical data by email to a colleague abroad is an export."
    ]
