"""``trbot triage``: one question, a batch, an evaluation, and every error path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import bot.triggers
from bot.cli import cli
from tests.conftest import REPO, FakeEmbedder
from tests.test_triggers import fake_matcher

RULES = """\
sets:
  country: [Iran, China]
  technology: [drone, hypersonic]
rules:
  - id: country_and_technology
    severity: high
    description: A sensitive country and a sensitive technology.
    guidance: doc.md
    all: [country, technology]
  - id: funding
    severity: medium
    description: Opaque funding.
    guidance: doc.md
    regex: ['\\banonymous donor\\b']
"""

ORGANISATIONS = """\
  - id: watchlisted
    severity: high
    description: A watchlisted organisation.
    guidance: doc.md
    organisations: {}
"""

SEMANTIC = """\
  - id: like_a_concern
    severity: medium
    description: Close to a known concern.
    guidance: doc.md
    semantic:
      threshold: 0.9
      examples: ["a company asked for admin access from abroad"]
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    guidance = tmp_path / "guidance"
    guidance.mkdir()
    (guidance / "doc.md").write_text("# doc\n", encoding="utf-8")
    (tmp_path / "triggers.yml").write_text(RULES, encoding="utf-8")
    (tmp_path / "app.yml").write_text(
        yaml.safe_dump({"paths": {"guidance_dir": "guidance", "triggers": "triggers.yml"}}), encoding="utf-8"
    )
    return tmp_path


@pytest.fixture
def run(workspace, monkeypatch):
    """Invoke trbot with the workspace's settings; the model must not be loaded unless allowed."""

    def no_model(config):
        raise AssertionError("the model was loaded although no rule is semantic")

    monkeypatch.setattr("bot.answer.load_embedder", no_model)

    def invoke(*args: str):
        return CliRunner().invoke(cli, ["--config", str(workspace / "app.yml"), "triage", *args])

    return invoke


def add_rules(workspace: Path, text: str) -> None:
    path = workspace / "triggers.yml"
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_one_question_says_whether_and_why(run):
    result = run("Can I ship our drone code to Iran?")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "would escalate (severity high):",
        "  country_and_technology [high]: A sensitive country and a sensitive technology.",
        "    why: mentions 'Iran' and 'drone'",
        "    guidance: doc.md",
    ]
    quiet = run("What is FIRS?")
    assert quiet.exit_code == 0 and quiet.stdout == "would not escalate: no rule matched\n"


def test_json_is_exactly_the_shared_shape(run):
    result = run("an anonymous donor wants hypersonic results for China", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "escalate": True,
        "severity": "high",
        "rules": [
            {"id": "country_and_technology", "reason": "mentions 'China' and 'hypersonic'"},
            {"id": "funding", "reason": "mentions 'anonymous donor'"},
        ],
    }
    assert json.loads(run("hello", "--json").stdout) == {"escalate": False, "severity": None, "rules": []}


def test_a_batch_gives_one_line_per_question_with_everything_loaded_once(run, workspace, monkeypatch):
    loads = []
    real = bot.triggers.load_rules
    monkeypatch.setattr(bot.triggers, "load_rules", lambda *a, **k: loads.append(1) or real(*a, **k))
    queries = workspace / "q.jsonl"
    lines = [{"id": "a", "text": "drones for Iran"}, {"id": 7, "text": "a grant from UKRI"}]
    queries.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    result = run("--queries", str(queries))
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out == [
        {
            "id": "a",
            "escalate": True,
            "severity": "high",
            "rules": [{"id": "country_and_technology", "reason": "mentions 'Iran' and 'drone'"}],
        },
        {"id": 7, "escalate": False, "severity": None, "rules": []},
    ]
    assert loads == [1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "text": "x"}\nnot json\n', "queries line 2: not JSON (Expecting value)"),
        ('{"id": "a"}\n', 'queries line 1: needs a non-empty "text" field'),
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "queries line 2: id 'a' was already used"),
        ('{"id": [1], "text": "x"}\n', 'queries line 1: "id" must be text or a whole number'),
    ],
)
def test_a_bad_queries_file_names_the_line(run, workspace, content, message):
    queries = workspace / "q.jsonl"
    queries.write_text(content, encoding="utf-8")
    result = run("--queries", str(queries))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"Error: {message}"


def test_a_missing_or_unreadable_queries_file_is_one_line(run, workspace):
    result = run("--queries", str(workspace / "none.jsonl"))
    assert result.exit_code == 1
    assert result.stderr == f"Error: queries file not found: {workspace / 'none.jsonl'}\n"
    binary = workspace / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    unreadable = run("--queries", str(binary))
    assert unreadable.exit_code == 1 and "cannot read the queries file" in unreadable.stderr


def test_a_missing_or_bad_rules_file_is_one_line(run, workspace):
    result = run("drone", "--rules", str(workspace / "none.yml"))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {workspace / 'none.yml'}: rules file not found"
    add_rules(
        workspace,
        "  - id: broken\n    severity: urgent\n    description: d\n    guidance: doc.md\n"
        "    terms: [drone]\n",
    )
    bad = run("drone")
    assert bad.exit_code == 1
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "rule 'broken': severity 'urgent' is not one of high, medium" in bad.stderr


def test_modes_are_exclusive_and_a_question_must_not_be_empty(run, workspace):
    assert run().exit_code == 2
    queries = workspace / "q.jsonl"
    queries.write_text('{"id": 1, "text": "x"}\n', encoding="utf-8")
    both = run("drone", "--queries", str(queries))
    assert both.exit_code == 2 and "give one of QUESTION" in both.stderr
    empty = run("   ")
    assert empty.exit_code == 1 and "the question is empty" in empty.stderr


def test_organisation_rules_are_skipped_with_a_warning_without_a_watchlist_module(
    run, workspace, monkeypatch
):
    add_rules(workspace, ORGANISATIONS)
    monkeypatch.setattr(bot.triggers, "_load_matcher", lambda config: None)
    result = run("our partner NUDT wants drones for Iran", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == "warning: no watchlist matcher in this build: skipping rule(s) watchlisted\n"
    assert [rule["id"] for rule in json.loads(result.stdout)["rules"]] == ["country_and_technology"]


def test_organisation_rules_use_the_watchlist_matcher(run, workspace, monkeypatch):
    add_rules(workspace, ORGANISATIONS)
    monkeypatch.setattr(bot.triggers, "_load_matcher", lambda config: fake_matcher())
    result = run("Can I send our lidar code to my colleague at NUDT?", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rules"] == [
        {
            "id": "watchlisted",
            "reason": "names National University of Defense Technology as 'NUDT' "
            "(starter list, very high risk, score 0.97)",
        }
    ]


def test_the_model_is_loaded_for_a_semantic_rule(run, workspace, monkeypatch):
    add_rules(workspace, SEMANTIC)
    monkeypatch.setattr("bot.answer.load_embedder", lambda config: FakeEmbedder())
    result = run("A company asked for admin access from abroad", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rules"][0]["id"] == "like_a_concern"


def test_eval_reports_the_figures_and_every_miss(run, workspace):
    labelled = workspace / "set.yaml"
    labelled.write_text(
        yaml.safe_dump(
            [
                {"id": "p1", "text": "drones for Iran", "escalate": True, "severity": "high"},
                {"id": "p2", "text": "an anonymous donor", "escalate": True, "severity": "high"},
                {
                    "id": "p3",
                    "text": "our partner wants the wind tunnel data",
                    "escalate": True,
                    "severity": "high",
                },
                {"id": "n1", "text": "What is FIRS?", "escalate": False},
                {"id": "n2", "text": "hypersonic work in China, explained", "escalate": False},
            ]
        ),
        encoding="utf-8",
    )
    result = run("--eval", str(labelled))
    assert result.exit_code == 0, result.output
    assert "recall (high-risk escalated):  0.667  (2/3)" in result.stdout
    assert "benign escalated:              0.500  (1/2)" in result.stdout
    assert "precision:                     0.667" in result.stdout
    assert "severity as labelled:          1/2" in result.stdout
    assert (
        "missed: p3 (expected high, got none: no rule): our partner wants the wind tunnel data"
        in result.stdout
    )
    assert (
        "false alarm: n2" in result.stdout
        and "severity: p2 (expected high, got medium: funding)" in result.stdout
    )
    figures = json.loads(run("--eval", str(labelled), "--json").stdout)
    assert (figures["recall"], figures["benign_escalation_rate"], figures["questions"]) == (0.6667, 0.5, 5)
    assert set(figures["latency"]) == {"p50_ms", "p95_ms"}


def test_eval_of_a_bad_labelled_file_is_one_line(run, workspace):
    result = run("--eval", str(workspace / "none.yaml"))
    assert result.exit_code == 1 and "labelled file not found" in result.stderr


@pytest.mark.model
def test_the_shipped_rules_through_the_cli(real_embedder, monkeypatch):
    monkeypatch.setattr("bot.answer.load_embedder", lambda config: real_embedder)
    monkeypatch.setattr(bot.triggers, "_load_matcher", lambda config: fake_matcher())
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(REPO / "app.yml"),
            "triage",
            "--json",
            "Can I send our lidar code to my colleague at NUDT?",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["severity"] == "high"
