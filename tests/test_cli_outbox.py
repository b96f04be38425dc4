"""``trbot outbox list``: ids, kinds, attempts, next try, errors and case refs; never message text."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.cli.outbox import COMMANDS, list_messages
from bot.outbox import Outbox

SECRET = "Can I send the hypersonic test data to the institute in Harbin?"


@pytest.fixture
def settings_file(tmp_path):
    path = tmp_path / "app.yml"
    path.write_text(f"paths:\n  state_db: {tmp_path / 'state.db'}\n")
    return path


@pytest.fixture
def seeded(settings_file, tmp_path):
    box = Outbox(tmp_path / "state.db")
    delivered = box.enqueue("chat.postMessage", {"channel": "C1", "text": SECRET}, kind="answer")
    failed = box.enqueue(
        "chat.postMessage", {"channel": "C2", "text": SECRET}, kind="case_card", case_ref="RS-2026-0009"
    )
    pending = box.enqueue(
        "response_url", {"url": "https://hooks.slack.com/x", "message": {"text": SECRET}}, kind="answer"
    )
    box.claim(2)
    box.mark_delivered(delivered, {"ts": "1.0"})
    box.record_failure(failed, "channel_not_found", permanent=True)
    box.close()
    return {"delivered": delivered, "failed": failed, "pending": pending}


def _run(settings_file, *args):
    return CliRunner().invoke(cli, ["--config", str(settings_file), "outbox", "list", *args])


def test_list_shows_every_message_without_its_text(settings_file, seeded):
    result = _run(settings_file)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["id", "status", "kind", "method"]
    assert [line.split()[0] for line in lines[1:4]] == [
        str(seeded[k]) for k in ("pending", "failed", "delivered")
    ]
    assert "RS-2026-0009" in result.output and "channel_not_found" in result.output
    assert lines[-1] == "1 pending, 0 sending, 1 delivered, 1 failed"
    assert SECRET not in result.output and "hooks.slack.com" not in result.output


def test_list_filters_by_status_and_prints_json(settings_file, seeded):
    result = _run(settings_file, "--status", "failed", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert (row["id"], row["kind"], row["case_ref"], row["last_error"], row["attempts"]) == (
        seeded["failed"],
        "case_card",
        "RS-2026-0009",
        "channel_not_found",
        1,
    )
    assert "payload" not in row and SECRET not in result.output
    pending = json.loads(_run(settings_file, "--status", "pending", "--json").output)
    assert [m["id"] for m in pending] == [seeded["pending"]] and pending[0]["next_attempt_at"]


def test_a_bad_status_and_a_missing_database_are_one_line_each(settings_file, tmp_path):
    bad = _run(settings_file, "--status", "lost")
    assert bad.exit_code == 2 and "'lost' is not one of" in bad.output
    missing = _run(settings_file)
    assert missing.exit_code == 1 and missing.output.count("\n") == 1 and "no outbox yet" in missing.output


def test_the_command_has_help_with_an_example():
    assert "Example:" in (list_messages.help or "") and [c.name for c in COMMANDS] == ["outbox"]
