from pathlib import Path

import pytest

from bot.config import ConfigError
from bot.records import Referral
from bot.referrals import ReferralRule, load_referrals, referral_for

RULES = [
    ReferralRule(
        "the Data Protection Officer", "dpo@example.ac.uk", ("GDPR", "data protection impact assessment")
    ),
    ReferralRule("Health and Safety", "hs@example.ac.uk", ("chemical spill", "lone working")),
]


def test_a_topic_the_question_names_and_the_passages_do_not_gives_its_office():
    found = referral_for(
        "Is my dataset GDPR compliant on a US cloud?", ["Store data in restricted areas."], RULES
    )
    assert found == Referral("the Data Protection Officer", "dpo@example.ac.uk", "GDPR")
    assert referral_for("how do I report a chemical spill?", [], RULES).office == "Health and Safety"


def test_topics_match_as_phrases_of_stems_in_order():
    assert referral_for("Do I need a data-protection impact assessment?", [], RULES).topic == (
        "data protection impact assessment"
    )
    assert referral_for("a spill of chemicals", [], RULES) is None  # not the phrase
    assert referral_for("is lone-working allowed at night?", [], RULES) is not None


def test_no_referral_when_the_passages_name_the_topic_too():
    shown = ["Under UK GDPR, personal data sent abroad needs safeguards."]
    assert referral_for("Is my dataset GDPR compliant?", shown, RULES) is None
    assert referral_for("What is the FIRS penalty?", [], RULES) is None


def test_referrals_file_is_read_and_checked(tmp_path):
    assert load_referrals(tmp_path / "missing.yaml") == []
    good = tmp_path / "referrals.yaml"
    good.write_text("- office: Ethics\n  contact: ethics@example.ac.uk\n  topics: [ethics approval]\n")
    assert load_referrals(good) == [ReferralRule("Ethics", "ethics@example.ac.uk", ("ethics approval",))]
    cases = {
        "office: Ethics": "expected a YAML list",
        "- office: Ethics\n  topics: [x]\n": "entry 1: 'contact'",
        "- office: Ethics\n  contact: e@x\n  topics: []\n": "entry 1 (Ethics): 'topics'",
        "- office: Ethics\n  contact: e@x\n  topics: [the of]\n": "has no words to match",
        "- office: Ethics\n  contact: e@x\n  topics: [x]\n  phone: 1\n": "unknown key(s) phone",
        "- [unclosed": "cannot read the referrals",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_referrals(bad)


def test_shipped_referrals_load_and_name_offices_with_contacts():
    rules = load_referrals(Path(__file__).resolve().parent.parent / "knowledge" / "referrals.yaml")
    assert len(rules) >= 8 and all(
        "@" in rule.contact or rule.contact.startswith("https://") for rule in rules
    )
