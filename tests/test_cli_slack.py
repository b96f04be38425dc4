from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from bot.cli.slack import COMMANDS, feedback, manifest, serve
from bot.slack.serve import build_manifest
from bot.state import StateStore
from tests.slack_harness import make_config


@pytest.fixture
def slack_config(tmp_path):
    return make_config("https://slack.com/api/", tmp_path)


def test_every_command_has_help_with_an_example():
    for command in [serve, manifest, *feedback.commands.values()]:
        assert "Example:" in (command.help or ""), command.name
    assert [command.name for command in COMMANDS] == ["serve", "manifest", "feedback"]


def test_manifest_prints_yaml(slack_config):
    result = CliRunner().invoke(manifest, ["--http", "https://bot.example.ac.uk"], obj=slack_config)
    assert result.exit_code == 0
    assert yaml.safe_load(result.output) == build_manifest(slack_config, "https://bot.example.ac.uk")


def test_manifest_refuses_a_plain_http_url(slack_config):
    result = CliRunner().invoke(manifest, ["--http", "http://bot.example.ac.uk"], obj=slack_config)
    assert result.exit_code == 2 and "https://" in result.output


def test_serve_without_tokens_fails_with_one_clear_line(slack_config):
    env = {"SLACK_BOT_TOKEN": None, "SLACK_APP_TOKEN": None, "SLACK_SIGNING_SECRET": None}
    result = CliRunner(env=env).invoke(serve, [], obj=slack_config)
    assert result.exit_code == 1
    assert result.output.startswith("Error: SLACK_BOT_TOKEN is not set") and result.output.count("\n") == 1


def test_serve_port_needs_http(slack_config):
    result = CliRunner().invoke(serve, ["--port", "8080"], obj=slack_config)
    assert result.exit_code == 2 and "--http" in result.output


def test_feedback_export(slack_config):
    runner = CliRunner()
    missing = runner.invoke(feedback, ["export"], obj=slack_config)
    assert missing.exit_code == 1 and "no feedback yet" in missing.output
    store = StateStore(slack_config.paths.state_db)
    store.add_feedback(user="U1", channel="C1", question="q", chunk_ids=["a#1"], helpful=True)
    store.close()
    as_csv = runner.invoke(feedback, ["export"], obj=slack_config)
    assert as_csv.exit_code == 0 and as_csv.output.splitlines()[0].startswith("id,created_at,user")
    as_json = runner.invoke(feedback, ["export", "--json"], obj=slack_config)
    assert as_json.exit_code == 0 and '"question": "q"' in as_json.output


def test_feedback_purge_before_a_date(slack_config):
    from datetime import UTC, datetime, timedelta

    store = StateStore(slack_config.paths.state_db)
    store.add_feedback(user="U1", channel="C1", question="old", chunk_ids=[], helpful=True)
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat(timespec="seconds")
    store._db.execute("UPDATE feedback SET created_at = ?", [old])
    store.add_feedback(user="U1", channel="C1", question="new", chunk_ids=[], helpful=True)
    store.close()
    cutoff = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%d")
    runner = CliRunner()
    declined = runner.invoke(feedback, ["purge", "--before", cutoff], obj=slack_config, input="n\n")
    assert declined.exit_code == 1 and "Delete 1 feedback entries" in declined.output
    result = runner.invoke(feedback, ["purge", "--before", cutoff, "--yes"], obj=slack_config)
    assert result.exit_code == 0 and "deleted 1 feedback entries" in result.output
    store = StateStore(slack_config.paths.state_db)
    assert [row.question for row in store.list_feedback()] == ["new"]
    store.close()
    bad = runner.invoke(feedback, ["purge", "--before", "last tuesday"], obj=slack_config)
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output or "%Y-%m-%d" in bad.output


def test_serve_on_a_port_in_use_is_one_line_before_the_model_loads(slack_config, monkeypatch):
    import socket

    import bot.answer

    monkeypatch.setattr(bot.answer, "open_answerer", lambda config: pytest.fail("model loaded"))
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    env = {"SLACK_BOT_TOKEN": "xoxb-1-2-abc", "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99aaabbb85a5"}
    try:
        result = CliRunner(env=env).invoke(serve, ["--http", "--port", str(port)], obj=slack_config)
    finally:
        taken.close()
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"127.0.0.1:{port}" in result.output and "already in use" in result.output


def test_a_slack_outage_at_start_up_is_not_called_a_rejected_token(tmp_path, monkeypatch):
    import bot.answer
    from tests.fake_slack import FakeSlack

    monkeypatch.setattr(bot.answer, "open_answerer", lambda config: pytest.fail("model loaded"))
    env = {"SLACK_BOT_TOKEN": "xoxb-1-2-abc", "SLACK_APP_TOKEN": "xapp-1-A1-2-abc"}
    with FakeSlack() as fake:
        config = make_config(fake.api_url, tmp_path)
        fake.fail_next("auth.test", 1, status=503)
        outage = CliRunner(env=env).invoke(serve, [], obj=config)
        fake.error_next("auth.test", "invalid_auth")
        rejected = CliRunner(env=env).invoke(serve, [], obj=config)
    assert outage.exit_code == 1 and "answered HTTP 503" in outage.output and "rejected" not in outage.output
    assert rejected.exit_code == 1 and "SLACK_BOT_TOKEN was rejected" in rejected.output
