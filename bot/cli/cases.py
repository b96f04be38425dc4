"""``trbot cases list | show | export | browse``: the research-security team's cases from a terminal.

Each parses, calls one ``bot.cases`` function and prints; ``CaseError`` (an unknown reference or
status) becomes one line and a non-zero exit through ``bot.cli``. Exports are written readable
only by their owner (0600), in one piece.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from bot.cases import STATUSES, AuditEntry, Case, CaseStore, export_cases
from bot.config import Config

DEFAULT_BROWSE_PORT = 8001
# What Datasette shows above each table (`trbot cases browse`).
TABLE_DESCRIPTIONS = {
    "cases": (
        "One row per case: reference, status (new, acknowledged, in_progress, resolved, closed), "
        "severity, source (trigger, pre-screen, researcher-request), who asked and where, the "
        "question, the matched rules (JSON), the assignee, the outcome and the latest note."
    ),
    "case_events": (
        "The append-only audit log: every action on a case with its actor (a Slack user id, or "
        "trbot) and time: created, follow-ups, notifications queued/sent/failed, status changes, "
        "assignments, notes, reminders and refused attempts. detail is JSON."
    ),
    "open_cases": "The open cases (new, acknowledged, in progress), high severity and oldest first.",
    "case_reminders": "Reminders sent for cases nobody acknowledged: one per case and period.",
    "case_counters": "The last reference number given out in each year.",
    "case_notifications": "Outbox messages whose delivery result is already in the audit log.",
    "outbox": "Every message the bot must deliver to Slack, with attempts, next try and last error.",
    "feedback": "Helpful / not helpful clicks on answers, with the question and an optional reason.",
}
HIDDEN_TABLES = ("events", "threads", "case_keys", "_sqlite_migrations")


def _open(config: Config) -> CaseStore:
    path = config.paths.state_db
    if not path.exists():
        raise click.ClickException(f"no cases yet: {path} does not exist (`trbot serve` creates it)")
    return CaseStore(path, config.cases)


@click.group()
def cases() -> None:
    """Cases for the research-security team: list, show (with the audit log), export, browse."""


@cases.command("list")
@click.option("--status", help=f"Only cases in this status ({', '.join(STATUSES)}) or 'open'.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of cases.")
@click.pass_obj
def list_cases(config: Config, status: str | None, as_json: bool) -> None:
    """List cases, oldest first: reference, severity, status, age, assignee, source, rules.

    Example:

        trbot cases list --status open

        trbot cases list --json | jq '.[] | select(.severity == "high") | .ref'
    """
    store = _open(config)
    try:
        found = store.list(status)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([case.to_dict() for case in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo("no cases" + (f" with status {status}" if status else ""))
        return
    click.echo(
        f"{'REF':<15} {'SEVERITY':<8} {'STATUS':<12} {'OPENED (UTC)':<17} {'ASSIGNEE':<12} SOURCE / RULES"
    )
    for case in found:
        rules = ", ".join(case.rule_ids) or "-"
        opened = case.created_at[:16].replace("T", " ")
        click.echo(
            f"{case.ref:<15} {case.severity:<8} {case.status:<12} {opened:<17} "
            f"{case.assignee or '-':<12} {case.source}: {rules}"
        )


@cases.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the case and its audit log as JSON.")
@click.pass_obj
def show_case(config: Config, ref: str, as_json: bool) -> None:
    """Show one case with its whole audit log.

    Example:

        trbot cases show RS-2026-0001
    """
    store = _open(config)
    try:
        store.sync_notifications()
        case = store.get(ref)
        entries = store.audit(case.ref)
    finally:
        store.close()
    if as_json:
        data = case.to_dict() | {"audit": [entry.to_dict() for entry in entries]}
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(format_case(case, entries))


def format_case(case: Case, entries: list[AuditEntry]) -> str:
    """A case and its audit log, for a terminal."""
    lines = [
        f"{case.ref}  {case.severity} severity  {case.status}",
        f"opened     {case.created_at}  (updated {case.updated_at})",
        f"source     {case.source}",
        f"requester  {case.requester or '-'} in {case.channel or '-'}",
        f"message    {case.permalink or '-'}",
        f"assignee   {case.assignee or '-'}",
        f"outcome    {case.outcome or '-'}",
        "question   " + case.question,
    ]
    for rule in case.rules:
        lines.append(
            f"rule       {rule.id}: {rule.description}" + (f" ({rule.reason})" if rule.reason else "")
        )
    if case.attachment:
        lines.append("attached   " + json.dumps(case.attachment, ensure_ascii=False)[:2000])
    lines += ["", "audit log:"]
    for entry in entries:
        change = ""
        if entry.from_status != entry.to_status and entry.to_status:
            change = f" [{entry.from_status or '-'} -> {entry.to_status}]"
        detail = f" {json.dumps(entry.detail, ensure_ascii=False)}" if entry.detail else ""
        lines.append(f"  {entry.id:>5}  {entry.at}  {entry.actor:<14} {entry.action}{change}{detail}")
    return "\n".join(lines)


@cases.command("export")
@click.option("--csv", "fmt", flag_value="csv", default=True, help="CSV with a header row (the default).")
@click.option("--json", "fmt", flag_value="json", help="JSON: each case with its notes and audit log.")
@click.option("--audit", is_flag=True, help="Export the audit log (one row per entry) instead of the cases.")
@click.option("--status", help="Only cases in this status (or 'open').")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (created readable only by you, 0600) instead of printing.",
)
@click.pass_obj
def export(config: Config, fmt: str, audit: bool, status: str | None, output: Path | None) -> None:
    """Export the cases (or the audit log) as CSV or JSON.

    Cells a spreadsheet would run as a formula are prefixed with '. The file holds what
    researchers asked: keep it where only the team can read it.

    Example:

        trbot cases export --csv --output cases.csv

        trbot cases export --json --audit -o audit.json
    """
    store = _open(config)
    try:
        text = export_cases(store, fmt, audit=audit, status=status)
    finally:
        store.close()
    if output is None:
        click.echo(text, nl=False)
        return
    write_private(output, text)
    click.echo(f"wrote {output} (readable only by you)", err=True)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, the file readable and writable only by its owner."""
    folder = path.resolve().parent
    if not folder.is_dir():
        raise click.ClickException(f"cannot write {path}: the folder {folder} does not exist")
    try:
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)  # mkstemp: mode 0600
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
                out.write(text)
            os.chmod(temp, 0o600)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc


@cases.command("browse")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_BROWSE_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a --host other than this machine (Datasette has no login: put authentication in front).",
)
@click.pass_obj
def browse(config: Config, host: str, port: int, allow_remote: bool) -> None:
    """Browse and query the cases in Datasette, read-only, on http://127.0.0.1:8001.

    Needs the optional extra: pip install 'trbot[datasette]'. Datasette itself has no login:
    keep it on 127.0.0.1 and reach it through an SSH tunnel or an authenticating proxy (see the
    README). Stop it with Ctrl-C.

    Example:

        trbot cases browse

        ssh -L 8001:127.0.0.1:8001 trbot-host    # from your laptop, then open http://127.0.0.1:8001
    """
    if not _is_loopback(host) and not allow_remote:
        raise click.UsageError(
            f"--host {host} would let anyone who can reach it read every case (Datasette has no login); "
            "keep 127.0.0.1 behind an SSH tunnel or an authenticating proxy, or add --allow-remote"
        )
    try:
        import datasette  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(
            "Datasette is not installed: pip install 'trbot[datasette]' (or .venv/bin/pip install datasette)"
        ) from exc
    store = _open(config)  # migrates, so every table the descriptions name exists
    store.close()
    path = config.paths.state_db
    handle, metadata_file = tempfile.mkstemp(prefix="trbot-datasette-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(datasette_metadata(path), out)
        args = datasette_command(path, host, port, Path(metadata_file))
        click.echo(f"serving {path} read-only at http://{host}:{port}/ (Ctrl-C stops it)", err=True)
        completed = subprocess.run(args, check=False)
    except KeyboardInterrupt:
        return
    finally:
        Path(metadata_file).unlink(missing_ok=True)
    if completed.returncode not in (0, -2, 130):
        raise click.ClickException(f"Datasette stopped with exit code {completed.returncode}")


def datasette_metadata(path: Path) -> dict[str, Any]:
    """Datasette metadata for the state database: a title, table descriptions, internal tables hidden."""
    tables: dict[str, Any] = {name: {"description": text} for name, text in TABLE_DESCRIPTIONS.items()}
    tables |= {name: {"hidden": True} for name in HIDDEN_TABLES}
    tables["cases"]["sort_desc"] = "created_at"
    tables["case_events"]["sort_desc"] = "id"
    return {
        "title": "trbot cases",
        "description": "The research-security team's cases and their audit log (read-only).",
        "databases": {path.stem: {"tables": tables}},
    }


def datasette_command(path: Path, host: str, port: int, metadata: Path) -> list[str]:
    """``datasette serve`` for the state database: read-only connections, no whole-file download."""
    return [
        sys.executable,
        "-m",
        "datasette",
        "serve",
        str(path),
        "--host",
        host,
        "--port",
        str(port),
        "--metadata",
        str(metadata),
        "--setting",
        "allow_download",
        "off",
        "--setting",
        "default_page_size",
        "50",
    ]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


COMMANDS = (cases,)
