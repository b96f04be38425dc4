"""``trbot watchlists``: import, list, remove, search and eval, their output and every user error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bot.cli import cli
from tests.conftest import REPO

DATA = Path(__file__).resolve().parent / "data" / "watchlists"
STARTER_DIR = REPO / "knowledge" / "watchlists"


@pytest.fixture
def settings(tmp_path: Path):
    def write(screening: dict | None = None, watchlists_dir: Path = STARTER_DIR) -> Path:
        path = tmp_path / "app.yml"
        data = {"paths": {"watchlist_db": "watchlists.db", "watchlists_dir": str(watchlists_dir)}}
        if screening:
            data["screening"] = screening
        path.write_text(yaml.safe_dump(data))
        return path

    return write


@pytest.fixture
def run(settings):
    def invoke(*args: str, screening: dict | None = None, watchlists_dir: Path = STARTER_DIR):
        path = settings(screening, watchlists_dir)
        return CliRunner().invoke(cli, ["--config", str(path), "watchlists", *args])

    return invoke


def test_import_prints_a_summary(run):
    result = run("import", "--format", "uk-sanctions", str(DATA / "uk-sanctions.csv"))
    assert result.exit_code == 0, result.output
    assert "imported 'uk-sanctions' (uk-sanctions) from uk-sanctions.csv: 6 entries" in result.output
    assert "0 rows skipped" in result.output and "file date: 2026-12-01" in result.output
    assert "note: 1 ship designations left out" in result.output


def test_import_reports_bad_rows_by_line_and_replaces_an_earlier_import(run):
    run("import", "--format", "us-csl", str(DATA / "us-csl.csv"), "--name", "csl")
    result = run("import", "--format", "us-csl", str(DATA / "us-csl-bad-rows.csv"), "--name", "csl")
    assert result.exit_code == 0, result.output
    assert "2 entries" in result.output and "4 rows skipped" in result.output
    assert "skipped line 3: no _id" in result.stderr
    assert "skipped line 6: the same _id as line 2" in result.stderr
    assert "file date: not stated in the file" in result.output
    assert "replaced the earlier import (13 entries" in result.output


def test_import_json(run):
    result = run("import", "--format", "csv", str(DATA / "institutions-bad-rows.csv"), "--json")
    summary = json.loads(result.output)
    assert summary["list"] == "csv" and summary["entries"] == 2
    assert summary["skipped"][0] == {"row": 5, "reason": "no name"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--format", "uk-sanctions", str(DATA / "uk-sanctions-missing-column.csv")],
            "no 'Name type' column",
        ),
        (["--format", "csv", str(DATA / "institutions-latin1.csv")], "not UTF-8 text"),
        (["--format", "csv", "/nonexistent/list.csv"], "no such file"),
        (["--format", "us-csl", str(DATA / "uk-sanctions.csv")], "use --format uk-sanctions"),
        (["--format", "csv", str(DATA / "institutions.csv"), "--name", "no spaces please"], "list name"),
    ],
)
def test_import_errors_are_one_line_and_leave_nothing(run, args, message):
    result = run("import", *args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    listed = run("list", "--json", screening={"starter_list": False})
    assert json.loads(listed.output) == []


def test_an_unknown_format_is_refused_by_the_option(run):
    result = run("import", "--format", "xml", str(DATA / "us-csl.csv"))
    assert result.exit_code == 2 and "'xml' is not one of" in result.output


def test_list_shows_the_starter_imported_on_first_use(run):
    result = run("list")
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()[:2]
    assert header.split() == ["name", "format", "entries", "names", "imported", "(UTC)", "file", "date"]
    assert row.split()[:3] == ["starter", "csv", "21"] and "2026-12-01" in row


def test_list_flags_stale_lists(run, tmp_path):
    old = tmp_path / "old.csv"
    old.write_text(
        (DATA / "institutions.csv").read_text().replace("# date: 2026-11-20", "# date: 2020-01-01")
    )
    run("import", "--format", "csv", str(old), "--name", "old")
    result = run("list", screening={"max_list_age_days": 30, "starter_list": False})
    assert "STALE" in result.stdout and "warning: list 'old' is" in result.stderr
    rows = json.loads(run("list", "--json", screening={"starter_list": False}).output)
    assert rows[0]["name"] == "old" and rows[0]["stale"] is True and rows[0]["file_date"] == "2020-01-01"


def test_list_with_nothing_imported(run):
    result = run("list", screening={"starter_list": False})
    assert result.exit_code == 0 and "no lists imported yet" in result.output


def test_remove(run):
    run("import", "--format", "us-csl", str(DATA / "us-csl.csv"))
    result = run("remove", "us-csl")
    assert result.exit_code == 0 and "removed 'us-csl' (13 entries" in result.output
    missing = run("remove", "us-csl")
    assert missing.exit_code == 1 and "Error: no list named 'us-csl'" in missing.output


def test_removing_the_starter_keeps_it_removed(run):
    run("list")
    assert run("remove", "starter").exit_code == 0
    assert "starter" not in run("list").output


def test_search_shows_candidates_scores_and_why(run):
    run("import", "--format", "us-csl", str(DATA / "us-csl.csv"))
    result = run("search", "Harbin Inst. of Tech.", "--country", "CN")
    assert result.exit_code == 0, result.output
    assert "entries in 2 lists (starter, us-csl)" in result.output
    assert "1. MATCH  1.00  Harbin Institute of Technology" in result.output
    assert "why: name 'Harbin Institute of Technology': weighted word overlap 1.00" in result.output
    assert "country CN matches" in result.output
    assert (
        "source: https://unitracker.aspi.org.au/universities/harbin-institute-of-technology/" in result.output
    )


def test_search_shows_near_misses_on_request(run):
    plain = run("search", "Northwestern University")
    assert plain.exit_code == 0 and "no match or possible match (--all shows near misses)" in plain.output
    near = run("search", "Northwestern University", "--all")
    assert "no match  0.67  Northwestern Polytechnical University" in near.output
    assert "only in the list name: polytechnic" in near.output


def test_search_json(run):
    result = run("search", "Beijing University of Technology", "--json")
    payload = json.loads(result.output)
    [candidate] = payload["candidates"]
    assert candidate["entry"] == "Beijing Institute of Technology" and candidate["strength"] == "possible"
    assert candidate["list"] == "starter" and payload["warnings"] == []


def test_eval_prints_precision_recall_possible_and_errors(run, tmp_path):
    result = run("eval", str(REPO / "eval" / "matching-holdout.yaml"), "--sweep")
    assert result.exit_code == 0, result.output
    assert "32 screenings: 22 of listed organisations, 10 of organisations on no list" in result.output
    assert "match (score >= 0.86): precision 1.000, recall 1.000" in result.output
    assert "errors: 0" in result.output and "threshold  precision  recall" in result.output
    report = json.loads(run("eval", str(REPO / "eval" / "matching-holdout.yaml"), "--json").output)
    assert report["match_precision"] == 1.0 and report["verdicts"]["false match"] == 0


def test_eval_of_a_broken_set(run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("screenings: [{id: a}]\n")
    result = run("eval", str(bad))
    assert result.exit_code == 1 and "needs a query and an expect" in result.output


def test_help_texts():
    runner = CliRunner()
    for command in ("import", "list", "remove", "search", "eval"):
        result = runner.invoke(cli, ["watchlists", command, "--help"])
        assert result.exit_code == 0 and len(result.output) > 200
    assert "uk-sanctions" in runner.invoke(cli, ["watchlists", "import", "--help"]).output
