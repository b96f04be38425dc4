"""``trbot prescreen``: one partner (text and --json), a batch, and the error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bot.cli import cli
from tests.conftest import REPO


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    """A settings file using the shipped rules, guidance and starter list, with its own databases."""
    data = {
        "paths": {
            "guidance_dir": str(REPO / "knowledge" / "guidance"),
            "screening_rules": str(REPO / "knowledge" / "screening-rules.yml"),
            "watchlists_dir": str(REPO / "knowledge" / "watchlists"),
            "watchlist_db": str(tmp_path / "watchlists.db"),
            "state_db": str(tmp_path / "state.db"),
            "index_db": str(tmp_path / "index.db"),
        }
    }
    path = tmp_path / "app.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run(settings: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(settings), "prescreen", *args])


def test_one_partner_as_json_is_the_issues_object(settings):
    result = run(
        settings, "Harbin Inst. of Technology", "--area", "battery chemistry", "--json", "--keywords-only"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["rating", "matches", "reasons", "next_steps", "disclaimer", "case"]
    assert data["rating"] == "red" and data["case"] is None
    assert data["matches"][0]["entry"] == "Harbin Institute of Technology"
    assert data["matches"][0]["list"] == "starter" and data["matches"][0]["strength"] == "match"
    kinds = {reason["kind"] for reason in data["reasons"]}
    assert kinds == {"watchlist", "country", "area"}


def test_one_partner_as_text(settings):
    result = run(
        settings, "University of Leeds", "--country", "UK", "--kind", "data sharing", "--keywords-only"
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Green: no list match found")
    assert "Matches: none in the lists loaded." in out
    assert "[collaboration] Data sharing" in out and "cite: Export controls: what counts as an export" in out
    assert "Case: none (the command line never opens one)" in out
    assert "not a clearance" in out


def test_the_help_says_the_command_line_never_opens_a_case(settings):
    result = run(settings, "--help")
    assert result.exit_code == 0
    assert "never opens a" in result.output and "case" in result.output


def test_a_batch_screens_every_line_with_its_id(settings, tmp_path):
    batch = tmp_path / "partners.jsonl"
    lines = [
        {"id": "a", "organisation": "BUAA"},
        {"id": 7, "organisation": "Nanjing University", "area": "poetry"},
        {"organisation": "University of Edinburgh", "country": "United Kingdom"},
    ]
    batch.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    result = run(settings, "--batch", str(batch), "--keywords-only")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(row["id"], row["rating"]) for row in rows] == [("a", "red"), (7, "amber"), (3, "green")]
    assert all(
        list(row)[1:] == ["rating", "matches", "reasons", "next_steps", "disclaimer", "case"] for row in rows
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 1, "organisation": "BUAA"}\nnot json\n', "line 2: not JSON"),
        ('{"id": 1}\n', 'line 1: needs a non-empty "organisation"'),
        ('["BUAA"]\n', "line 1: expected an object"),
        ('{"organisation": "BUAA", "colour": "red"}\n', "line 1: unknown field 'colour'"),
        ('{"organisation": "BUAA", "kind": "spaceship"}\n', "line 1: Unknown kind of collaboration"),
        ('{"organisation": "BUAA", "area": 5}\n', "line 1: 'area' must be text"),
        ("\n\n", "no partners to screen"),
    ],
)
def test_a_bad_batch_line_stops_the_run_before_anything_is_screened(settings, tmp_path, content, message):
    batch = tmp_path / "bad.jsonl"
    batch.write_text(content, encoding="utf-8")
    result = run(settings, "--batch", str(batch), "--keywords-only")
    assert result.exit_code == 1
    assert message in result.output
    assert '"rating"' not in result.output


def test_usage_errors(settings, tmp_path):
    assert "give the ORGANISATION" in run(settings).output
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"organisation": "X"}\n', encoding="utf-8")
    both = run(settings, "BUAA", "--batch", str(batch))
    assert both.exit_code == 2 and "--batch takes its partners from the file" in both.output
    assert "Unknown kind of collaboration" in run(settings, "BUAA", "--kind", "spaceship").output
    assert "Please give the organisation's name" in run(settings, "   ", "--keywords-only").output


def test_a_broken_rules_file_is_one_line_naming_the_rule(settings, tmp_path):
    rules = tmp_path / "rules.yml"
    text = (REPO / "knowledge" / "screening-rules.yml").read_text(encoding="utf-8")
    broken = text.replace(
        "label: UK sanctions regime\n    raises: amber", "label: UK sanctions regime\n    raises: crimson"
    )
    assert broken != text
    rules.write_text(broken, encoding="utf-8")
    data = yaml.safe_load(settings.read_text(encoding="utf-8"))
    data["paths"]["screening_rules"] = str(rules)
    settings.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = run(settings, "BUAA", "--keywords-only")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line == (
        "Error: screening rules: country factor 'uk-sanctions-regime': raises: "
        "expected one of note, amber, red, got 'crimson'"
    )


def test_a_model_that_cannot_load_falls_back_to_keywords_with_a_note(settings):
    data = yaml.safe_load(settings.read_text(encoding="utf-8"))
    data["embedding"] = {"model": "/nonexistent/model"}
    settings.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = run(settings, "University of Leeds", "--area", "robotics", "--json")
    assert result.exit_code == 0, result.output
    assert "note: research areas are matched by keywords only" in result.stderr
    assert json.loads(result.stdout)["rating"] == "amber"
