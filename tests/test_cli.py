"""The trbot command line: success paths with the real model, and every user error path."""

from __future__ import annotations

import dataclasses
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
def test_a_fusion_that_weighs_sentences_asks_for_them_and_index_adds_them(run, real_embedder, settings):
    assert run("index", "--no-progress").exit_code == 0
    data = yaml.safe_load(settings.read_text())
    settings.write_text(yaml.safe_dump(data | {"retrieval": {"sentence_weight": 0.5}}))

    before = run("ask", "Do I need an ATAS certificate?")
    assert before.exit_code == 1
    assert "no sentence embeddings, which retrieval.sentence_weight needs: run 'trbot index'" in before.output

    rebuilt = run("index", "--no-progress")
    assert "full rebuild (sentence embeddings are wanted" in rebuilt.output
    after = run("ask", "Do I need an ATAS certificate?", "--json")
    assert after.exit_code == 0, after.output
    assert json.loads(after.output)["status"] == "answered"


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
    assert "of the others declined" in result.output


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


# -- settings file, --help, --version, search input (issue 9) ------------------------------------


def test_help_works_with_a_typo_in_the_settings(tmp_path):
    bad = tmp_path / "app.yml"
    bad.write_text("answer:\n  top_passagess: 3\n")
    for args in (["ask", "--help"], ["stats", "--help"], ["--help"]):
        result = CliRunner().invoke(cli, ["--config", str(bad), *args])
        assert result.exit_code == 0 and "Usage:" in result.output, args
    result = CliRunner().invoke(cli, ["--config", str(bad), "ask", "q"])
    assert result.exit_code == 1 and "answer.top_passagess" in result.output


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert (
        result.exit_code == 0 and result.output.startswith("trbot ") and result.output.strip()[-1].isdigit()
    )


def test_help_names_the_settings_file(settings):
    result = CliRunner().invoke(cli, ["--config", str(settings), "--help"])
    assert f"Settings: {settings.resolve()}" in " ".join(result.output.split())


def test_running_from_a_folder_without_app_yml_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRBOT_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["stats"])
    assert f"no app.yml in {tmp_path}; using the default settings" in result.output
    assert result.exit_code == 1 and "trbot index" in result.output  # and then the real problem


def test_stats_says_which_settings_file(run, settings, monkeypatch):
    class Store:
        def meta(self):
            return type("Meta", (), {"model": "m", "dimension": 3, "indexed_at": "now"})()

        def counts(self):
            return 1, 2

        def documents(self):
            return {}

        def close(self):
            pass

    monkeypatch.setattr(bot.cli.answers.IndexStore, "open", lambda path: Store())
    result = run("stats")
    assert result.exit_code == 0 and f"settings:   {settings.resolve()}" in result.output


@pytest.fixture
def fake_search(monkeypatch):
    seen = []

    class Index:
        def search(self, text, **options):
            seen.append(options)
            return []

    monkeypatch.setattr(bot.cli.answers, "load_embedder", lambda config: None)
    monkeypatch.setattr(bot.cli.answers.SearchIndex, "load", lambda *args: Index())
    return seen


def test_search_uses_retrieval_per_doc_unless_given(run, settings, tmp_path, fake_search):
    data = yaml.safe_load(settings.read_text()) | {"retrieval": {"per_doc": 3}}
    settings.write_text(yaml.safe_dump(data))
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": 1, "text": "licence"}\n')
    assert run("search", "--queries", str(queries)).exit_code == 0
    assert run("search", "--queries", str(queries), "--per-doc", "2").exit_code == 0
    assert [options["per_doc"] for options in fake_search] == [3, 2]


def test_search_refuses_non_utf8_input_and_duplicate_ids(run, tmp_path, fake_search):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"id": 1, "text": "fine"}\n{"id": 2, "text": "caf\u00e9"}\n'.encode("latin-1"))
    result = run("search", "--queries", str(latin))
    assert (
        result.exit_code == 1
        and "line 2: not UTF-8 text" in result.output
        and "Traceback" not in result.output
    )
    twice = tmp_path / "twice.jsonl"
    twice.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n{"id": "a", "text": "z"}\n')
    result = run("search", "--queries", str(twice))
    assert result.exit_code == 1 and 'line 3: id "a" repeats line 1' in result.output
    assert fake_search == []  # refused before any search


@pytest.mark.model
def test_the_index_it_creates_is_private(run, settings, real_embedder):
    assert run("index", "--no-progress").exit_code == 0
    index = settings.parent / "index.db"
    assert index.stat().st_mode & 0o777 == 0o600


# -- batch ask, facts in eval, review dates (issue 8) ---------------------------------------------


class _Answerer:
    """Answers anything (``context`` echoed in the message); refuses "too long"."""

    def __init__(self):
        self.asked = []

    def answer(self, question, context=None):
        from bot.answer import QuestionError
        from tests.slack_harness import make_answer

        if question == "too long":
            raise QuestionError("That question is too long.")
        self.asked.append((question, context))
        return make_answer(question)


@pytest.fixture
def batch(run, monkeypatch):
    answerer = _Answerer()
    monkeypatch.setattr(bot.cli.answers, "open_answerer", lambda config: answerer)
    return answerer


def test_ask_batch_answers_each_line_once_in_order(run, batch, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"id": "q1", "text": "Do I need ATAS?"}\n\n'
        '{"id": 7, "text": "and how long?", "context": "Do I need ATAS?"}\n{"text": "no id"}\n'
    )
    result = run("ask", "--queries", str(queries), "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["id"], r["line"], r["status"]) for r in rows] == [
        ("q1", 1, "answered"),
        (7, 3, "answered"),
        (4, 4, "answered"),
    ]
    assert {"passages", "citations", "confidence", "question"} <= set(rows[0])
    assert batch.asked == [("Do I need ATAS?", None), ("and how long?", "Do I need ATAS?"), ("no id", None)]


def test_ask_batch_reports_bad_lines_and_keeps_the_good_output(run, batch, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_bytes(
        b'{"id": "a", "text": "fine"}\n'
        b"not json\n"
        b'{"id": "b"}\n'
        b'{"id": "a", "text": "again"}\n'
        b'{"id": "c", "text": "caf\xe9"}\n'
        b'{"id": "d", "text": "too long"}\n'
        b'{"id": "e", "text": "q", "context": 5}\n'
        b'{"id": "f", "text": "also fine"}\n'
    )
    result = run("ask", "--queries", str(queries))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    rows = [json.loads(line) for line in lines[:-1]]
    errors = {row["line"]: row["error"] for row in rows if "error" in row}
    assert [row["id"] for row in rows if "error" not in row] == ["a", "f"]
    assert errors[2].startswith("line 2: not JSON")
    assert errors[3] == 'line 3: needs a "text" field holding the question'
    assert errors[4] == 'line 4: id "a" repeats line 1'
    assert errors[5].startswith("line 5: not UTF-8 text")
    assert errors[6] == "line 6: That question is too long."
    assert errors[7].startswith('line 7: "context" must be text')
    assert "6 query line(s) could not be answered" in lines[-1]
    assert [q for q, _ in batch.asked] == ["fine", "also fine"]


def test_ask_needs_a_question_or_queries_but_not_both(run, batch, tmp_path):
    assert run("ask").exit_code == 2
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"text": "x"}\n')
    result = run("ask", "question", "--queries", str(queries))
    assert result.exit_code == 2 and "either a QUESTION or --queries" in result.output


@pytest.mark.model
def test_ask_batch_with_the_real_model(indexed, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"id": 1, "text": "Do I need an ATAS certificate?"}\n'
        '{"id": 2, "text": "\u00bfNecesito una licencia de exportaci\u00f3n para compartir datos?"}\n'
    )
    result = indexed("ask", "--queries", str(queries), "--json")
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.output.splitlines())
    assert first["status"] == "answered" and first["citations"][0]["path"] == "atas.md"
    assert second["status"] == "not_english" and "English" in second["message"]


def test_format_answer_flags_a_document_overdue_for_review():
    from tests.slack_harness import make_answer

    answer = make_answer("q")
    stale = dataclasses.replace(
        answer, citations=tuple(dataclasses.replace(c, stale=True) for c in answer.citations)
    )
    assert "overdue for review" not in bot.cli.answers.format_answer(answer)
    assert "overdue for review" in bot.cli.answers.format_answer(stale)


def test_stats_lists_documents_overdue_for_review(run, monkeypatch):
    from indexer.store import DocumentRow

    def row(doc_id, reviewed):
        return DocumentRow(doc_id, doc_id, doc_id, "", (), (), reviewed, None, "h")

    class Store:
        def meta(self):
            return type("Meta", (), {"model": "m", "dimension": 3, "indexed_at": "now"})()

        def counts(self):
            return 4, 9

        def documents(self):
            rows = [
                row("old.md", "2001-01-01"),
                row("new.md", "2999-01-01"),
                row("none.md", None),
                row("bad.md", "soon"),
            ]
            return {r.doc_id: r for r in rows}

        def close(self):
            pass

    monkeypatch.setattr(bot.cli.answers.IndexStore, "open", lambda path: Store())
    result = run("stats")
    assert result.exit_code == 0, result.output
    assert "overdue for review (last reviewed over 365 days ago): 1" in result.output
    assert "old.md: last reviewed 2001-01-01" in result.output and "new.md" not in result.output
    assert "no readable last_reviewed date: 2" in result.output
    assert "  bad.md" in result.output and "  none.md" in result.output


@pytest.mark.model
def test_eval_reports_facts_answer_shape_and_handling(indexed, tmp_path):
    questions = tmp_path / "facts.yaml"
    questions.write_text(
        yaml.safe_dump(
            [
                {
                    "id": "f1",
                    "question": "Do I need ATAS?",
                    "expect": ["atas.md"],
                    "facts": [["ATAS"], ["nowhere-xyz"]],
                },
                {
                    "id": "l1",
                    "kind": "language",
                    "question": "Ai-je besoin d'une licence pour le code ?",
                    "expect": [],
                    "status": "not_english",
                },
            ]
        )
    )
    result = indexed("eval", str(questions), "--misses")
    assert result.exit_code == 0, result.output
    assert "facts (2 in 1 questions): in the answer shown 0.500" in result.output
    assert "answer shape: passages per answer max" in result.output
    assert "handled as expected: language 1/1" in result.output
    assert "facts not shown: f1#2" in result.output and "facts in no chunk: f1#2" in result.output
