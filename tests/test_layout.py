"""The layout rules: only the Slack adapter imports Slack, and renderers stay pure."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLACK_LIBRARIES = re.compile(r"slack_(bolt|sdk)\b")


def _python_files() -> list[Path]:
    return sorted(p for folder in ("bot", "indexer") for p in (ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    return imported


def _may_import_slack(path: Path) -> bool:
    relative = path.relative_to(ROOT)
    in_adapter = relative.parts[:2] == ("bot", "slack")
    is_renderer = path.stem == "blocks" or path.stem.endswith("_render")
    return in_adapter and not is_renderer


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_slack_adapter_imports_slack(path):
    if _may_import_slack(path):
        return
    assert not {name for name in _imports(path) if SLACK_LIBRARIES.match(name)}
