"""Partner pre-screening quality: ratings on a labelled set, and the DM router.

    .venv/bin/python scripts/eval_screening.py eval/screening.yaml eval/screening-holdout.yaml
    .venv/bin/python scripts/eval_screening.py --routing eval/screening-routing{,-holdout}.yaml
    .venv/bin/python scripts/eval_screening.py --areas eval/screening-areas{,-holdout}.yaml

Screenings: each file is screened twice, with research areas matched by keywords only (the
baseline) and with keywords plus the sentence model (what trbot runs). For each it prints the
rating accuracy, the confusion matrix, every red for an unlisted organisation (target: none),
every listed organisation not rated red or amber (target: none), every other mismatch, and the
warm screen latency (p50/p95; each file is screened once before timing).

The lists: a temporary watchlist database with the shipped starter list and the watchlists test
fixtures (tests/data/watchlists: uk-sanctions.csv, us-csl.csv, institutions.csv). Nothing in
var/ is read or written. The model is loaded once (no guidance index is needed).

Areas: each research area through the area classifier, keywords only (the baseline) and with
the model at a sweep of similarity thresholds (the configured one marked): how many sensitive
areas fire (an NSI or export-control area) and how many others wrongly do, and the errors at
the configured threshold.

Routing: every message through ``route_message`` (with the same lists' ``find_mentions``);
accuracy, the confusion matrix over screen / guidance / unsure, and how often the organisation,
area and country were extracted as labelled.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.answer import load_embedder  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.screening import (  # noqa: E402
    RATINGS,
    AreaClassifier,
    PartnerQuery,
    Screener,
    load_config_rules,
    route_message,
)
from bot.watchlists import WatchlistStore, load_matcher  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "watchlists"
LISTS = (
    (FIXTURES / "uk-sanctions.csv", "uk-sanctions", "uk-sanctions"),
    (FIXTURES / "us-csl.csv", "us-csl", "us-csl"),
    (FIXTURES / "institutions.csv", "csv", "institution"),
)
ROUTES = ("screen", "guidance", "unsure")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="labelled YAML files")
    parser.add_argument("--routing", action="store_true", help="the files are DM routing sets")
    parser.add_argument("--areas", action="store_true", help="the files are research-area sets")
    parser.add_argument("--no-model", action="store_true", help="keywords only (skip the model run)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp))
        if args.areas:
            rules = load_config_rules(config)
            embedder = load_embedder(config)
            for file in args.files:
                report_areas(file, rules, embedder, config.screening.area_similarity)
            return 0
        matcher = _matcher(config)
        if args.routing:
            rules = load_config_rules(config)
            for file in args.files:
                report_routing(file, rules, matcher)
            return 0
        rules = load_config_rules(config)
        runs = [("keywords only (baseline)", None)]
        if not args.no_model:
            runs.append(("keywords + model", load_embedder(config)))
        for label, embedder in runs:
            screener = Screener(
                matcher, rules, embedder, settings=config.screening, institution=config.institution
            )
            for file in args.files:
                report_screenings(file, screener, label)
    return 0


def _config(tmp: Path):
    config = load_config(ROOT / "app.yml", env={})
    paths = dataclasses.replace(
        config.paths,
        watchlist_db=tmp / "watchlists.db",
        state_db=tmp / "state.db",
        watchlists_dir=ROOT / "knowledge" / "watchlists",
        guidance_dir=ROOT / "knowledge" / "guidance",
        screening_rules=ROOT / "knowledge" / "screening-rules.yml",
    )
    return dataclasses.replace(config, paths=paths)


def _matcher(config):
    store = WatchlistStore(config.paths.watchlist_db)
    try:
        for file, fmt, name in LISTS:
            store.import_file(file, fmt, name)
        return load_matcher(config, store)
    finally:
        store.close()


# -- screenings ------------------------------------------------------------------------------


def report_screenings(file: Path, screener: Screener, label: str) -> None:
    items = yaml.safe_load(file.read_text(encoding="utf-8"))
    queries = [_query(item) for item in items]
    for query in queries:  # warm-up: the timings below are of warm screens
        screener.screen(query)
    results, timings = [], []
    for query in queries:
        started = time.perf_counter()
        results.append(screener.screen(query))
        timings.append((time.perf_counter() - started) * 1000)
    confusion = Counter((item["expect"], result.rating) for item, result in zip(items, results, strict=True))
    correct = sum(count for (want, got), count in confusion.items() if want == got)
    print(f"\n== {file} — {label}: {len(items)} screenings")
    print(f"rating accuracy: {correct}/{len(items)} = {correct / len(items):.3f}")
    print("confusion (rows: expected, columns: got):")
    print("          " + "".join(f"{r:>8}" for r in RATINGS))
    for want in RATINGS:
        print(f"  {want:<8}" + "".join(f"{confusion[(want, got)]:>8}" for got in RATINGS))
    false_red = [
        (i, r) for i, r in zip(items, results, strict=True) if not i.get("listed") and r.rating == "red"
    ]
    missed = [(i, r) for i, r in zip(items, results, strict=True) if i.get("listed") and r.rating == "green"]
    print(f"red for an unlisted organisation (target 0): {len(false_red)}")
    for item, result in false_red:
        print(f"    {item['id']} {item['organisation']!r}: {_top(result)}")
    print(f"listed organisation not red/amber (target 0): {len(missed)}")
    for item, result in missed:
        print(f"    {item['id']} {item['organisation']!r}: {_top(result)}")
    others = [
        (i, r)
        for i, r in zip(items, results, strict=True)
        if i["expect"] != r.rating and (i, r) not in false_red and (i, r) not in missed
    ]
    if others:
        print("other mismatches:")
        for item, result in others:
            why = "; ".join(
                f"{reason.kind}/{reason.level}" for reason in result.reasons if reason.level != "note"
            )
            expected, got = item["expect"], result.rating
            print(f"    {item['id']} {item['organisation']!r}: expected {expected}, got {got} ({why})")
    print(f"warm screen latency, all: {_latency(timings)}")
    with_area = [t for t, query in zip(timings, queries, strict=True) if query.area]
    if with_area:
        print(f"  with a research area ({len(with_area)}, one query embedding each): {_latency(with_area)}")
    embedder = screener.classifier.embedder
    if embedder is not None and with_area:  # the baseline: the model's own query encoding, same texts
        raw = []
        for query in queries:
            if query.area:
                started = time.perf_counter()
                embedder.embed_query(query.area)
                raw.append((time.perf_counter() - started) * 1000)
        print(f"  the model's query encoding alone, same areas: {_latency(raw)}")


def _latency(timings: list[float]) -> str:
    return f"p50 {statistics.median(timings):.1f} ms, p95 {_p95(timings):.1f} ms, max {max(timings):.1f} ms"


def _query(item: dict) -> PartnerQuery:
    return PartnerQuery(
        item["organisation"],
        country=item.get("country"),
        area=item.get("area"),
        kind=item.get("kind"),
        funding=item.get("funding"),
        notes=item.get("notes"),
    )


def _top(result) -> str:
    if not result.matches:
        return "no match"
    match = result.matches[0]
    return f"{match.entry} [{match.list}] {match.strength} {match.score:.2f}"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


# -- research areas --------------------------------------------------------------------------

SWEEP = (0.40, 0.45, 0.50, 0.55, 0.60)


def report_areas(file: Path, rules, embedder, configured: float) -> None:
    items = yaml.safe_load(file.read_text(encoding="utf-8"))
    groups = [g.id for g in rules.area_groups.values() if g.by_meaning]
    sensitive = [i for i in items if i["expect"] == "sensitive"]
    others = [i for i in items if i["expect"] != "sensitive"]
    print(f"\n== {file}: {len(sensitive)} sensitive areas, {len(others)} others")
    keywords = AreaClassifier(rules.areas)
    print(
        f"  keywords only (baseline): {_fired(keywords, sensitive)}/{len(sensitive)} sensitive fire, "
        f"{_fired(keywords, others)}/{len(others)} others fire"
    )
    for threshold in sorted(set(SWEEP) | {configured}):
        classifier = AreaClassifier(rules.areas, embedder, threshold, meaning_groups=groups)
        mark = "  <- configured (screening.area_similarity)" if threshold == configured else ""
        print(
            f"  keywords + model at {threshold:.2f}: {_fired(classifier, sensitive)}/{len(sensitive)} "
            f"sensitive fire, {_fired(classifier, others)}/{len(others)} others fire{mark}"
        )
    classifier = AreaClassifier(rules.areas, embedder, configured, meaning_groups=groups)
    for item in items:
        hits = _sensitive_hits(classifier, item["text"])
        if bool(hits) != (item["expect"] == "sensitive"):
            found = ", ".join(f"{h.area.id} ({h.how} {h.evidence})" for h in hits) or "nothing"
            print(f"    {item['text']!r}: expected {item['expect']}, found {found}")


def _sensitive_hits(classifier, text: str) -> list:
    return [hit for hit in classifier.classify(text) if hit.area.group in ("nsi", "export")]


def _fired(classifier, items: list[dict]) -> int:
    return sum(bool(_sensitive_hits(classifier, item["text"])) for item in items)


# -- routing ---------------------------------------------------------------------------------


def report_routing(file: Path, rules, matcher) -> None:
    items = yaml.safe_load(file.read_text(encoding="utf-8"))
    confusion: Counter = Counter()
    fields = Counter()
    checked = Counter()
    wrong = []
    for item in items:
        route = route_message(item["text"], rules=rules, matcher=matcher)
        confusion[(item["expect"], route.kind)] += 1
        if route.kind != item["expect"]:
            wrong.append((item, route))
            continue
        for name in ("organisation", "area", "country"):
            if name in item:
                checked[name] += 1
                got = getattr(route.query, name, None) if route.query else None
                if _same(got, item[name]):
                    fields[name] += 1
                else:
                    wrong.append((item, route))
    correct = sum(count for (want, got), count in confusion.items() if want == got)
    print(f"\n== {file}: {len(items)} messages")
    print(f"routing accuracy: {correct}/{len(items)} = {correct / len(items):.3f}")
    print("confusion (rows: expected, columns: got):")
    print("            " + "".join(f"{r:>10}" for r in ROUTES))
    for want in ROUTES:
        print(f"  {want:<10}" + "".join(f"{confusion[(want, got)]:>10}" for got in ROUTES))
    for name in ("organisation", "area", "country"):
        if checked[name]:
            print(f"{name} extracted as labelled: {fields[name]}/{checked[name]}")
    for item, route in wrong:
        query = route.query.to_dict() if route.query else None
        print(f"    {item['id']} {item['text']!r}: expected {item['expect']}, got {route.kind} {query}")


def _same(got: str | None, want: str) -> bool:
    return bool(got) and got.strip().lower() == want.strip().lower()


if __name__ == "__main__":
    raise SystemExit(main())
