"""Evaluate when the bot speaks (not a test): precision and recall of "answer" on eval/thread-replies.yaml.

For each labelled thread reply and "all"-channel message, compares:
  before          what trbot did before bot/addressing.py: every reply in a bot thread was answered,
                  and every "all"-channel message not judged off-topic (--real) got a reply
  rules           bot/addressing.py alone (question form, asker, mentions, vocabulary)
  retrieval       (--real) question-or-not ignored: a channel message is answered when the real
                  answerer finds the guidance relevant (status "answered"); replies as "rules"
  rules+retrieval (--real) what `trbot serve` does: a channel message needs both
Precision matters most (a wrong public reply is worse than a missed one). The held-out part was
written before the rules and is reported separately.

    .venv/bin/python scripts/eval_addressing.py            # rules only, instant
    .venv/bin/python scripts/eval_addressing.py --real     # with the index and model from app.yml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.addressing import decide_channel_message, decide_thread_reply  # noqa: E402

BOT = "U0BOT"
ASKER = "U0ASKER"
OTHER = "U0OTHER"


def load(path: Path) -> dict[str, list[dict]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for split, items in data.items():
        for item in items:
            item["text"] = item["text"].replace("<@BOT>", f"<@{BOT}>")
            assert item["expect"] in ("answer", "quiet"), item["id"]
            assert item["kind"] in ("reply", "channel"), item["id"]
        data[split] = items
    return data


def rules(item: dict) -> bool:
    author = ASKER if item.get("author") == "asker" else OTHER
    if item["kind"] == "reply":
        return decide_thread_reply(item["text"], author=author, askers=(ASKER,), bot_user_id=BOT).answer
    return decide_channel_message(item["text"], bot_user_id=BOT).answer


def variants(answered: Callable[[dict], bool] | None) -> dict[str, Callable[[dict], bool]]:
    out: dict[str, Callable[[dict], bool]] = {
        "before": lambda item: (
            item["kind"] == "reply" or answered is None or answered(item, off_topic_only=True)
        ),
        "rules": rules,
    }
    if answered is not None:
        out["retrieval"] = lambda item: rules(item) if item["kind"] == "reply" else answered(item)
        out["rules+retrieval"] = lambda item: rules(item) and (item["kind"] == "reply" or answered(item))
    return out


def real_answered() -> Callable[..., bool]:
    from bot.answer import open_answerer
    from bot.config import load_config
    from bot.records import AnswerStatus
    from bot.slack.answers import question_from_text

    answerer = open_answerer(load_config())
    cache: dict[str, object] = {}

    def answered(item: dict, off_topic_only: bool = False) -> bool:
        question = question_from_text(item["text"], BOT)
        if question not in cache:
            cache[question] = answerer.answer(question).status
        status = cache[question]
        return status is not AnswerStatus.OFF_TOPIC if off_topic_only else status is AnswerStatus.ANSWERED

    return answered


def score(items: list[dict], decide: Callable[[dict], bool]) -> tuple[float, float, int, list[str]]:
    tp = fp = fn = 0
    wrong = []
    for item in items:
        said, want = decide(item), item["expect"] == "answer"
        tp += said and want
        fp += said and not want
        fn += want and not said
        if said != want:
            wrong.append(f"{item['id']}({'FP' if said else 'FN'})")
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, fp, wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=ROOT / "eval" / "thread-replies.yaml")
    parser.add_argument("--real", action="store_true", help="also use the real answerer (index and model)")
    args = parser.parse_args(argv)
    data = load(args.file)
    answered = real_answered() if args.real else None
    print(f"when the bot speaks: {args.file.name}")
    head = f"{'split':<9}{'kind':<9}{'variant':<17}{'n':>4}{'precision':>11}{'recall':>8}"
    print(f"{head}{'wrong replies':>15}  errors")
    for split, items in data.items():
        for kind in ("reply", "channel", "all"):
            chosen = [item for item in items if kind in ("all", item["kind"])]
            for name, decide in variants(answered).items():
                precision, recall, fp, wrong = score(chosen, decide)
                errors = " ".join(wrong) if name != "before" else ""
                row = f"{split:<9}{kind:<9}{name:<17}{len(chosen):>4}{precision:>11.3f}{recall:>8.3f}"
                print(f"{row}{fp:>15}  {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
