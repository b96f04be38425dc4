"""Does a question read as English (bot/language.py)? Hand-picked cases, no model."""

from __future__ import annotations

import pytest

from bot.language import latin_share, reads_as_english


@pytest.mark.parametrize(
    "question",
    [
        "هل أحتاج إلى ترخيص تصدير لإرسال بيانات تقنية إلى زميل في الخارج؟",  # Arabic
        "我需要出口许可证才能把源代码发给中国的合作者吗？",  # Chinese
        "Нужна ли мне экспортная лицензия, чтобы отправить данные коллеге за границу?",  # Russian
        "海外の共同研究者にソースコードを送るのに輸出許可は必要ですか？",  # Japanese
        "Ai-je besoin d'une licence d'exportation pour envoyer mon code à un collègue en Chine ?",
        "¿Necesito una licencia de exportación para compartir datos con un socio en Irán?",
        "Brauche ich eine Exportgenehmigung, um Forschungsdaten an einen Partner in China zu senden?",
        "Preciso de licença de exportação para levar meu laptop para a China?",
        "Heb ik een exportvergunning nodig voor mijn onderzoek met een partner in China?",
    ],
)
def test_other_languages_are_recognised(question):
    assert not reads_as_english(question)


@pytest.mark.parametrize(
    "question",
    [
        "Can I collaborate with the Universidad de Buenos Aires on drone navigation research?",
        "Is Tsinghua Daxue on the Entity List?",
        "can I send my code to a guy in china",
        "ATAS?",
        "is the Université de Paris a risky partner for our lab?",
        "what does 'dual-use' mean, e.g. for a thermal camera",
        "我的 question: do I need ATAS for my PhD student from Beijing?",  # mostly English letters
        "",
    ],
)
def test_english_questions_with_foreign_names_pass(question):
    assert reads_as_english(question)


def test_latin_share_counts_letters_only():
    assert latin_share("123 ?!") == 1.0
    assert latin_share("abc дом") == pytest.approx(0.5)
