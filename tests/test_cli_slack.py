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
