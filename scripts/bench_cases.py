"""What cases add to the answer path, and how the team's views scale (a few seconds in all).

    .venv/bin/python scripts/bench_cases.py [--cases 300]

Reports, on a fresh state database in a temporary folder (WAL, as `trbot serve` uses it):

- escalate: open a case and queue its card and the researcher's notices (``Escalation.escalate``),
  p50/p95, against the baseline of queueing one answer (``Outbox.enqueue``) in the same run;
- a follow-up: the same in the thread of an open case;
- a card action (``Escalation.transition``: the change, the card update, the thread line);
- /trcase list and App Home with all the cases open (read and render), p50/p95.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.cases import CaseStore, Escalation  # noqa: E402
from bot.config import CaseSettings, OutboxSettings  # noqa: E402
from bot.outbox import Outbox  # noqa: E402
from bot.slack import cases_render  # noqa: E402

RULES = [{"id": "military_end_use", "description": "Military or WMD end use", "reason": "mentions 'drone'"}]


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"p50 {statistics.median(ordered) * 1000:6.2f} ms  p95 {p95 * 1000:6.2f} ms  (n={len(ordered)})"


def timed(fn, count: int) -> list[float]:
    samples = []
    for n in range(count):
        started = time.perf_counter()
        fn(n)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    count = parser.parse_args().cases
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "state.db"
        settings = CaseSettings(enabled=True, channel="G0SECURITY", team_users=("U0OFFICER",))
        store, outbox = CaseStore(db, settings), Outbox(db, OutboxSettings())
        escalation = Escalation(store, outbox, settings)

        def answer(n: int) -> None:
            payload = {"channel": "C0GENERAL", "thread_ts": f"{n}.1", "text": "answer", "blocks": []}
            outbox.enqueue("chat.postMessage", payload, kind="answer", dedupe_key=f"reply:{n}")

        def escalate(n: int) -> None:
            escalation.escalate(
                source="trigger",
                severity="high",
                requester=f"U0R{n:05d}",
                channel="C0GENERAL",
                question=f"Can I send drone autopilot code number {n} to a lab abroad?",
                rules=RULES,
                thread_ts=f"{n}.1",
                message_ts=f"{n}.1",
                dedupe_key=f"message:C0GENERAL:{n}.1",
            )

        def follow_up(n: int) -> None:
            escalation.escalate(
                source="trigger",
                severity="medium",
                requester=f"U0R{n:05d}",
                channel="C0GENERAL",
                question="and only the binaries?",
                thread_ts=f"{n}.1",
                message_ts=f"{n}.2",
                dedupe_key=f"message:C0GENERAL:{n}.2",
            )

        baseline = timed(answer, count)
        opening = timed(escalate, count)
        following = timed(follow_up, min(count, 100))
        refs = [case.ref for case in store.list("open")]
        acting = timed(lambda n: escalation.transition(refs[n], "acknowledge", "U0OFFICER"), min(count, 100))
        now = datetime.now(UTC)
        listing = timed(
            lambda n: cases_render.build_case_list(store.list("open"), "Open cases", now=now, empty=""), 10
        )
        home = timed(
            lambda n: cases_render.build_home_section(store.list("open"), now=now, command="/trcase"), 10
        )
        print(f"queue one answer (baseline)     {percentiles(baseline)}")
        print(f"escalate: case + card + notices {percentiles(opening)}")
        print(f"follow-up in a case's thread    {percentiles(following)}")
        print(f"card action (acknowledge)       {percentiles(acting)}")
        print(f"/trcase list, {count} open cases   {percentiles(listing)}")
        print(f"App Home section, {count} open     {percentiles(home)}")
        print(f"outbox rows queued: {sum(outbox.counts().values())}; references {refs[0]} .. {refs[-1]}")
        store.close()
        outbox.close()


if __name__ == "__main__":
    main()
