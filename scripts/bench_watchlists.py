"""Benchmark the watchlist matcher on a generated list of 20,000 entries (the CSL's size).

Reports, in one run:
- the time to import a generated 20,000-row file in the US Consolidated Screening List CSV layout;
- the time to build the matcher from the store;
- screen latency (``Matcher.search``) p50/p95, warm, against two naive full scans: the same
  scorer over every name (on a sample of the queries; it is slow), and rapidfuzz's C
  ``process.extract`` with ``token_set_ratio`` over every normalised name;
- how often the indexed search finds the same best entry as the full scan with the same scorer;
- ``find_mentions`` latency on question-length texts.

Run:  .venv/bin/python scripts/bench_watchlists.py [--entries 20000] [--queries 300]
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rapidfuzz import fuzz, process

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.config import ScreeningSettings  # noqa: E402
from bot.watchlists import Matcher, WatchlistStore, _Name, _score  # noqa: E402

SEED = 20261201
CITIES = (
    "Beijing Shanghai Tianjin Chongqing Harbin Changchun Shenyang Dalian Jinan Qingdao Nanjing"
    " Hangzhou Hefei Fuzhou Xiamen Nanchang Wuhan Changsha Guangzhou Shenzhen Nanning Haikou Chengdu"
    " Guiyang Kunming Lhasa Xian Lanzhou Xining Yinchuan Urumqi Taiyuan Shijiazhuang Zhengzhou Hohhot"
    " Suzhou Wuxi Ningbo Dongguan Foshan Moscow Kazan Novosibirsk Yekaterinburg Samara Omsk Tomsk Perm"
    " Ufa Tehran Isfahan Tabriz Shiraz Mashhad Karaj Qom Minsk Pyongyang Damascus Karachi Lahore Dubai"
    " Istanbul"
).split()
SYLLABLES = (
    "hua xin tong da zhong guo tian ke ji rui heng sheng long feng yuan bo kai jin hai chang an ming"
    " de li wei xing kang tai yu jia qi shen fei lan bai ling ru hong xu ao sheng lian ze yun peng zhi"
).split()
RUSSIAN = "kron tekh avia radio elektro opto pribor mash stal neft gaz energo spets prom nauch".split()
DESCRIPTORS = (
    "Technology Electronics Aerospace Optics Precision Instruments Microelectronics Semiconductor"
    " Materials Defense Nuclear Radio Telecommunications Machinery Engineering Photonics Automation"
    " Software Navigation Laser Chemical Energy Shipbuilding Aviation Robotics Sensors"
).split()
TYPES = (
    "Co., Ltd.|Company|Research Institute|University|Institute|Group Corporation|LLC|JSC|Trading Company"
    "|Academy|Laboratory|Industrial Company|Limited"
).split("|")
SOURCES = [
    "Entity List (EL) - Bureau of Industry and Security",
    "Specially Designated Nationals (SDN) - Treasury Department",
    "Military End User (MEU) List - Bureau of Industry and Security",
    "Non-SDN Chinese Military-Industrial Complex Companies List (CMIC) - Treasury Department",
    "Unverified List (UVL) - Bureau of Industry and Security",
]
HEADER = (
    "_id,source,entity_number,type,programs,name,title,addresses,federal_register_notice,start_date,end_date,"
    "standard_order,license_requirement,license_policy,call_sign,vessel_type,gross_tonnage,gross_registered_tonnage,"
    "vessel_flag,vessel_owner,remarks,source_list_url,alt_names,citizenships,dates_of_birth,nationalities,"
    "places_of_birth,source_information_url,ids"
).split(",")


def proper(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return rng.choice(RUSSIAN).capitalize() + rng.choice(["prom", "tekh", "mash", "sistema", "pribor"])
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.choice([2, 2, 3]))).capitalize()


def entity_name(rng: random.Random) -> str:
    parts = [rng.choice(CITIES)] if rng.random() < 0.8 else []
    parts.append(proper(rng))
    parts += rng.sample(DESCRIPTORS, rng.choice([1, 1, 2]))
    parts.append(rng.choice(TYPES))
    if rng.random() < 0.1:
        parts.insert(-1, f"No. {rng.randint(1, 99)}")
    return " ".join(parts)


def generate_csl(path: Path, count: int, rng: random.Random) -> list[str]:
    names = []
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(HEADER) + "\n")
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for number in range(count):
            name = entity_name(rng)
            names.append(name)
            aliases = [entity_name(rng) for _ in range(rng.choice([0, 1, 1, 2, 3]))]
            if aliases and rng.random() < 0.5:
                aliases[-1] = "and " + aliases[-1]
            source = rng.choice(SOURCES)
            country = rng.choice(["CN", "CN", "CN", "RU", "RU", "IR", "HK", "AE", "TR", "BY"])
            row = {
                "_id": f"{number:08x}{rng.getrandbits(64):016x}",
                "source": source,
                "type": "Entity" if "Treasury" in source else "",
                "programs": "RUSSIA-EO14024" if "SDN" in source else "",
                "name": name
                + (f" ({''.join(w[0] for w in name.split()[:4]).upper()})" if rng.random() < 0.3 else ""),
                "addresses": f"{rng.randint(1, 300)} Keji Road, {rng.choice(CITIES)}, {country}",
                "start_date": f"20{rng.randint(10, 26):02d}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                "alt_names": "; ".join(aliases),
                "source_information_url": "https://www.bis.doc.gov/index.php/policy-guidance/lists-of-parties-of-concern",
            }
            writer.writerow([row.get(column, "") for column in HEADER])
    return names


def variant(name: str, rng: random.Random) -> str:
    """A realistic way of writing a listed name: abbreviated, misspelt, reordered, no legal form."""
    words = name.replace("Co., Ltd.", "").split()
    choice = rng.random()
    if choice < 0.25:
        words = [
            {"University": "Univ.", "Institute": "Inst.", "Technology": "Tech."}.get(w, w) for w in words
        ]
    elif choice < 0.5:
        target = max(range(len(words)), key=lambda i: len(words[i]))
        word = words[target]
        if len(word) > 5:
            cut = rng.randint(1, len(word) - 2)
            words[target] = word[:cut] + word[cut + 1 :]
    elif choice < 0.7:
        rng.shuffle(words)
    return " ".join(words)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def timed(function, *args):
    """The result and the wall-clock milliseconds (the CPU milliseconds go to ``CPU``)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    CPU.append((time.process_time() - cpu) * 1000)
    return result, (time.perf_counter() - started) * 1000


CPU: list[float] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--full-scan-queries", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(SEED)
    settings = ScreeningSettings()
    with tempfile.TemporaryDirectory() as scratch:
        csl = Path(scratch) / "consolidated.csv"
        names = generate_csl(csl, args.entries, rng)
        size = csl.stat().st_size
        store = WatchlistStore(Path(scratch) / "watchlists.db")
        started = time.perf_counter()
        summary = store.import_file(csl, "us-csl", "us-csl")
        import_seconds = time.perf_counter() - started
        started = time.perf_counter()
        store.import_file(csl, "us-csl", "us-csl")
        reimport_seconds = time.perf_counter() - started
        started = time.perf_counter()
        matcher = Matcher.from_store(store, settings)
        build_seconds = time.perf_counter() - started
        store.close()
    print(
        f"list: {summary.entries:,} entries, {summary.entries + summary.aliases:,} names "
        f"({size / 1e6:.1f} MB)"
    )
    print(
        f"import of a {args.entries:,}-row CSL file: {import_seconds:.2f} s "
        f"(again, replacing it: {reimport_seconds:.2f} s)"
    )
    print(f"matcher build from the store: {build_seconds:.2f} s")

    listed = [variant(rng.choice(names), rng) for _ in range(args.queries // 2)]
    unlisted = [
        f"{rng.choice(CITIES)} {proper(rng)} {rng.choice(DESCRIPTORS)} University"
        for _ in range(args.queries // 4)
    ]
    ordinary = (
        "Harbin Medical University|University of Manchester|Imperial College London|ETH Zurich|Hitachi"
        "|Northwestern University|Nanjing University|HIT|NUDT|Beijing Institute of Technology"
    ).split("|")
    queries = (
        listed + unlisted + [rng.choice(ordinary) for _ in range(args.queries - len(listed) - len(unlisted))]
    )
    rng.shuffle(queries)
    for query in queries[:20]:  # warm the caches
        matcher.search(query)
    latencies, results = [], {}
    CPU.clear()
    for query in queries:
        result, ms = timed(matcher.search, query)
        latencies.append(ms)
        results[query] = result
    print(
        f"screen (Matcher.search), {len(queries)} queries, warm: p50 {percentile(latencies, 0.5):.1f} ms, "
        f"p95 {percentile(latencies, 0.95):.1f} ms, max {max(latencies):.1f} ms (target p95 <= 50 ms); "
        f"CPU time p50 {percentile(CPU, 0.5):.1f} ms, p95 {percentile(CPU, 0.95):.1f} ms"
    )

    refs = matcher._refs
    prepared = [(ref, ref.name) for ref in refs if ref.kind != "acronym"]
    texts = [name.text for _, name in prepared]
    normalised = [" ".join(name.tokens) for _, name in prepared]
    scan_latencies, agree, compared = [], 0, 0
    for query in queries[: args.full_scan_queries]:
        query_name = _Name.of(query)
        started = time.perf_counter()
        best: dict[int, float] = {}
        for ref, name in prepared:
            score = _score(query_name, name).score
            if score > best.get(ref.entry, -1.0):
                best[ref.entry] = score
        scan_latencies.append((time.perf_counter() - started) * 1000)
        top_score = max(best.values())
        if top_score >= settings.possible_threshold:
            compared += 1
            found = results[query]  # the same best score (entries can tie; scores are rounded)
            if found and found[0].score >= top_score - 1e-3:
                agree += 1
    print(
        f"naive full scan, the same scorer over all {len(prepared):,} names: "
        f"p50 {percentile(scan_latencies, 0.5):.0f} ms, "
        f"p95 {percentile(scan_latencies, 0.95):.0f} ms ({len(scan_latencies)} queries)"
    )
    print(f"indexed search finds the full scan's best score: {agree}/{compared} queries with a candidate")
    extract_latencies = []
    for query in queries:
        _, ms = timed(
            lambda q: process.extract(q.lower(), normalised, scorer=fuzz.token_set_ratio, limit=10), query
        )
        extract_latencies.append(ms)
    print(
        f"naive full scan, rapidfuzz process.extract(token_set_ratio) over all names: "
        f"p50 {percentile(extract_latencies, 0.5):.1f} ms, p95 {percentile(extract_latencies, 0.95):.1f} ms"
    )

    sentences = [
        "We have been approached by {} about a joint project on {} and they want access to our lab data.",
        "Is it ok to host a visiting researcher from {} for six months to work on {}?",
        "A postdoc asked whether we can share code with {} and also with the University of Manchester on {}.",
    ]
    topics = [
        "battery materials",
        "hypersonic flow",
        "quantum sensing",
        "machine learning",
        "semiconductor lithography",
    ]
    mention_latencies, found_count = [], 0
    texts_to_scan = []
    for number in range(100):
        organisation = variant(rng.choice(names), rng) if number % 2 == 0 else rng.choice(ordinary)
        texts_to_scan.append(rng.choice(sentences).format(organisation, rng.choice(topics)))
    for text in texts_to_scan[:10]:
        matcher.find_mentions(text)
    CPU.clear()
    for text in texts_to_scan:
        found, ms = timed(matcher.find_mentions, text)
        mention_latencies.append(ms)
        found_count += bool(found)
    print(
        f"find_mentions, {len(texts_to_scan)} question-length texts, warm: "
        f"p50 {percentile(mention_latencies, 0.5):.1f} ms, "
        f"p95 {percentile(mention_latencies, 0.95):.1f} ms ({found_count} with a mention); "
        f"CPU time p50 {percentile(CPU, 0.5):.1f} ms, p95 {percentile(CPU, 0.95):.1f} ms"
    )
    print(f"mean screen latency {statistics.mean(latencies):.1f} ms; texts scanned {len(texts)}")


if __name__ == "__main__":
    main()
