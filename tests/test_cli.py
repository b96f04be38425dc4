"""The trbot command line: success paths with the real model, and every user error path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import bot.cli
import bot.cli.answers
from bot.cli import cli
from tests.conftest import REPO, SMALL_CORPUS


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    """A settings file whose paths point into the test's folder."""
    path = tmp_path / "app.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "institution": {"team_name": "TR Office", "email": "tr@test.ac.uk"},
                "paths": {"guidance_dir": str(SMALL_CORPUS), "index_db": "index.db", "state_db": "state.db"},
            }
        )
    )
    return path


@pytest.fixture
def run(settings, monkeypatch, request):
    """Invoke trbot with the test settings; model tests share the session's loaded model."""
    if "real_embedder" in request.fixturenames:
        embedder = request.getfixturevalue("real_embedder")
        monkeypatch.setattr(bot.cli.answers, "load_embedder", lambda config: embedder)
        monkeypatch.setattr("bot.answer.load_embedder", lambda config: embedder)

    def invoke(*args: str, input: str | None = None):
        return CliRunner().invoke(cli, ["--config", str(settings), *args], input=input)

    return invoke


@pytest.fixture
def indexed(run, settings, real_index_path):
    """The session's real index of the small corpus, copied to where the settings point."""
    shutil.copyfile(real_index_path, settings.parent / "index.db")
    return run


@pytest.mark.model
def test_index_reports_what_it_did_then_nothing_on_a_second_run(run, real_embedder, settings):
    first = run("index", "--no-progress")
    assert first.exit_code == 0, first.output
    assert "full rebuild (new index)" in first.output and "0 skipped" in first.output
    second = run("index", "--no-progress")
    assert second.exit_code == 0
    assert "0 added, 0 updated" in second.output and "0 chunks embedded" in second.output
    assert (settings.parent / "index.db").exists()


@pytest.mark.model
def test_ask_prints_passages_and_numbered_sources(indexed):
    result = indexed("ask", "Do I need an ATAS certificate?")
    assert result.exit_code == 0, result.output
    assert "[1] " in result.output and "Sources:" in result.output and "atas.md" in result.output


@pytest.mark.model
def test_ask_json_prints_the_answer_record(indexed):
    result = indexed("ask", "Do I need an ATAS certificate?", "--json", "--top", "2")
    data = json.loads(result.output)
    assert data["status"] == "answered" and 1 <= len(data["passages"]) <= 2


@pytest.mark.model
def test_ask_off_topic_names_the_configured_contact(indexed):
    result = indexed("ask", "What's the weather like in Leeds tomorrow?")
    assert result.exit_code == 0
    assert "TR Office" in result.output and "tr@test.ac.uk" in result.output


@pytest.mark.model
def test_search_prints_one_json_line_per_query(indexed, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "q1", "text": "ATAS certificate"}\n\n{"id": 2, "text": "sanctions list"}\n')
    result = indexed("search", "--queries", str(queries), "--top", "3")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["id"] for line in lines] == ["q1", 2]
    hits = lines[0]["hits"]
    assert hits[0]["path"] == "atas.md" and {"chunk", "score", "text"} <= set(hits[0])
    assert len({hit["path"] for hit in hits}) == len(hits), "one hit per document by default"
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


@pytest.mark.model
def test_search_per_doc_allows_several_hits_from_one_document(indexed, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": 1, "text": "export controls exemptions public domain"}\n')
    result = indexed("search", "--queries", str(queries), "--top", "5", "--per-doc", "3")
    paths = [hit["path"] for hit in json.loads(result.output)["hits"]]
    assert max(paths.count(path) for path in set(paths)) > 1


@pytest.mark.model
def test_eval_prints_three_modes_side_by_side(indexed, tmp_path):
    questions = tmp_path / "eval.yaml"
    questions.write_text(
        yaml.safe_dump(
            [
                {"id": "1", "question": "Do I need ATAS?", "expect": ["atas.md"]},
                {"id": "2", "question": "weather tomorrow", "expect": []},
            ]
        )
    )
    result = indexed("eval", str(questions))
    assert result.exit_code == 0, result.output
    for mode in ("hybrid", "bm25", "dense"):
        assert mode in result.output
    assert "off-topic declined" in result.output


@pytest.mark.model
def test_stats_shows_documents_chunks_and_model(indexed):
    result = indexed("stats")
    assert result.exit_code == 0
    assert "documents:" in result.output and "bundled:all-MiniLM-L6-v2" in result.output


# --- error paths: one clear line, non-zero exit, nothing half-written ------------------------------


def test_ask_before_any_index_says_to_run_index(run):
    result = run("ask", "Do I need ATAS?")
    assert result.exit_code == 1
    assert "run 'trbot index' first" in result.output


def test_stats_before_any_index_fails_cleanly(run):
    result = run("stats")
    assert result.exit_code == 1 and "trbot index" in result.output


@pytest.mark.model
@pytest.mark.parametrize(
    ("question", "message"), [("   ", "Please ask a question"), ("x" * 1200, "1200 characters")]
)
def test_empty_or_overlong_question_is_refused(indexed, question, message):
    result = indexed("ask", question)
    assert result.exit_code == 1 and message in result.output


def test_corrupt_index_is_reported(run, settings):
    (settings.parent / "index.db").write_bytes(b"not sqlite " * 500)
    result = run("ask", "Do I need ATAS?")
    assert result.exit_code == 1 and "not a readable trbot index" in result.output


def test_index_of_a_missing_path_writes_nothing(run, settings, tmp_path):
    result = run("index", str(tmp_path / "missing"), "--no-progress")
    assert result.exit_code == 1 and "no such file or folder" in result.output
    assert not (settings.parent / "index.db").exists()


def test_bad_setting_is_named(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("retrieval:\n  fusoin: rrf\n")
    result = CliRunner().invoke(cli, ["--config", str(bad), "stats"])
    assert result.exit_code == 1 and "retrieval.fusoin" in result.output


def test_search_rejects_a_malformed_query_line(run, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": 1, "text": "fine"}\nnot json\n')
    result = run("search", "--queries", str(queries))
    assert result.exit_code == 1 and "line 2" in result.output


def test_eval_rejects_a_malformed_file(run, tmp_path):
    questions = tmp_path / "eval.yaml"
    questions.write_text("just: a mapping\n")
    result = run("eval", str(questions))
    assert result.exit_code == 1 and "expected a YAML list" in result.output


def test_every_command_has_help_and_is_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    bot.cli.attach_slack_commands()
    for name, command in cli.commands.items():
        assert command.help, name
        assert f"trbot {name}" in readme, f"README does not mention 'trbot {name}'"
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output
