"""`trbot cases list | show | export | browse` (bot/cli/cases.py), and their error paths."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import bot.cli.cases as cli_cases
from bot.cases import CaseStore
from bot.cli import cli

OFFICER = "U0OFFICER"


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    path = tmp_path / "app.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "paths": {"state_db": "state.db", "index_db": "index.db"},
                "cases": {"enabled": True, "channel": "G0SECURITY", "team_users": [OFFICER]},
            }
        )
    )
    return path


@pytest.fixture
def run(settings):
    def invoke(*args: str):
        return CliRunner().invoke(cli, ["--config", str(settings), *args])

    return invoke


@pytest.fixture
def cases(tmp_path):
    """Two cases: one new, one resolved, with notes."""
    store = CaseStore(tmp_path / "state.db")
    first = store.open_case(
        source="trigger",
        severity="high",
        requester="U0RESEARCHER",
        channel="C0GENERAL",
        question="Can I send the drone firmware to our partner in Tehran?",
        rules=[{"id": "military_end_use", "description": "Military end use", "reason": "mentions 'drone'"}],
        thread_ts="1.1",
        message_ts="1.1",
    )
    second = store.open_case(
        source="researcher-request",
        severity="medium",
        requester="U0OTHER",
        channel="D0DM",
        question="=cmd|' /C calc'!A0",
    )
    store.transition(second.ref, "assign", OFFICER)
    store.transition(
        second.ref, "resolve", OFFICER, outcome="Advice given to the researcher", note="Called them."
    )
    store.close()
    return first.ref, second.ref


def test_list_shows_every_case_and_filters_by_status(run, cases):
    first, second = cases
    result = run("cases", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("REF") and len(lines) == 3
    assert first in lines[1] and "high" in lines[1] and "new" in lines[1] and "military_end_use" in lines[1]
    assert second in lines[2] and "resolved" in lines[2] and OFFICER in lines[2]
    assert "drone" not in result.output  # the question is for `show`, not a list on screen
    open_only = run("cases", "list", "--status", "open")
    assert first in open_only.output and second not in open_only.output
    data = json.loads(run("cases", "list", "--status", "resolved", "--json").output)
    assert [case["ref"] for case in data] == [second] and data[0][
        "outcome"
    ] == "Advice given to the researcher"
    assert run("cases", "list", "--status", "closed").output == "no cases with status closed\n"


def test_show_prints_the_case_and_its_whole_audit_log(run, cases):
    first, second = cases
    result = run("cases", "show", second.lower())
    assert result.exit_code == 0, result.output
    assert f"{second}  medium severity  resolved" in result.output
    actions = [line.split()[3] for line in result.output.split("audit log:\n")[1].splitlines()]
    assert actions == ["created", "assign", "resolve", "note"]
    assert (
        "[in_progress -> resolved]" in result.output
        and '"outcome": "Advice given to the researcher"' in result.output
    )
    data = json.loads(run("cases", "show", first, "--json").output)
    assert data["ref"] == first and data["rules"][0]["reason"] == "mentions 'drone'"
    assert [entry["action"] for entry in data["audit"]] == ["created"]


def test_unknown_reference_and_bad_status_are_one_line_errors(run, cases):
    missing = run("cases", "show", "RS-2026-9999")
    assert missing.exit_code == 1 and missing.output == (
        "Error: no case 'RS-2026-9999': `trbot cases list` shows the references\n"
    )
    bad = run("cases", "list", "--status", "pending")
    assert bad.exit_code == 1 and "unknown status 'pending'" in bad.output and "Traceback" not in bad.output
    assert len(bad.output.splitlines()) == 1


def test_no_database_yet_is_a_clear_error(run):
    result = run("cases", "list")
    assert result.exit_code == 1 and "no cases yet" in result.output and "trbot serve" in result.output


def test_export_to_a_file_readable_only_by_its_owner(run, cases, tmp_path):
    first, second = cases
    target = tmp_path / "cases.csv"
    target.write_text("old contents")
    target.chmod(0o644)
    result = run("cases", "export", "--csv", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [row["ref"] for row in rows] == [first, second]
    assert rows[1]["question"].startswith("'=")  # not run as a formula
    fresh = tmp_path / "audit.json"
    assert run("cases", "export", "--json", "--audit", "-o", str(fresh)).exit_code == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert [entry["action"] for entry in json.loads(fresh.read_text())][:2] == ["created", "created"]
    printed = json.loads(run("cases", "export", "--json", "--status", "open").output)
    assert [case["ref"] for case in printed] == [first] and printed[0]["audit"][0]["action"] == "created"
    assert not list(tmp_path.glob(".cases.csv.*"))  # no temporary file left behind


def test_export_into_a_missing_folder_fails_cleanly(run, cases, tmp_path):
    result = run("cases", "export", "--output", str(tmp_path / "nowhere" / "cases.csv"))
    assert result.exit_code == 1 and "does not exist" in result.output


def test_browse_runs_datasette_read_only_on_localhost_with_the_tables_described(
    run, cases, monkeypatch, tmp_path
):
    seen = {}

    def fake_run(args, check):
        seen["args"] = args
        metadata = Path(args[args.index("--metadata") + 1])
        seen["metadata"] = json.loads(metadata.read_text())
        seen["mode"] = stat.S_IMODE(metadata.stat().st_mode)
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(cli_cases.subprocess, "run", fake_run)
    result = run("cases", "browse")
    assert result.exit_code == 0, result.output
    args = seen["args"]
    assert args[1:4] == ["-m", "datasette", "serve"] and args[4] == str(tmp_path / "state.db")
    assert args[args.index("--host") + 1] == "127.0.0.1" and args[args.index("--port") + 1] == "8001"
    assert "allow_download" in args and "--immutable" not in args
    tables = seen["metadata"]["databases"]["state"]["tables"]
    assert "audit log" in tables["case_events"]["description"] and tables["events"]["hidden"]
    assert seen["mode"] == 0o600
    assert not Path(args[args.index("--metadata") + 1]).exists()  # removed afterwards


def test_browse_refuses_a_public_address_unless_asked(run, cases, monkeypatch):
    monkeypatch.setattr(cli_cases.subprocess, "run", lambda args, check: pytest.fail("started"))
    result = run("cases", "browse", "--host", "0.0.0.0")
    assert result.exit_code == 2 and "has no login" in result.output


def test_datasette_serves_the_cases_and_refuses_writes(tmp_path, cases):
    datasette_app = pytest.importorskip("datasette.app")
    path = tmp_path / "state.db"
    ds = datasette_app.Datasette(
        [str(path)], metadata=cli_cases.datasette_metadata(path), settings={"allow_download": False}
    )

    async def scenario():
        rows = (await ds.client.get("/state/cases.json?_shape=array")).json()
        page = (await ds.client.get("/state/case_events")).text
        write = await ds.client.get("/state.json", params={"sql": "update cases set status = 'closed'"})
        download = await ds.client.get("/state.db")
        return rows, page, write, download

    rows, page, write, download = asyncio.run(scenario())
    assert {row["ref"] for row in rows} == set(cases)
    assert "append-only audit log" in page
    assert write.status_code == 400 and "SELECT" in write.text
    assert download.status_code in (403, 404)
    store = CaseStore(path)
    assert store.get(cases[0]).status == "new"
