"""The service and feedback layers build no SQL: every query is a named function in `store/`."""

from __future__ import annotations

import ast
from pathlib import Path

import photosieve

PACKAGE = Path(photosieve.__file__).parent
SQL_BUILDERS = {"select", "insert", "update", "delete", "func", "text", "and_", "or_", "Select"}


def _sql_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if alias.name in SQL_BUILDERS or node.module == "sqlalchemy.sql"
            ]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("sqlalchemy")]
    return found


def test_service_and_feedback_import_no_sql_builders() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): names
        for layer in ("service", "feedback")
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        if (names := _sql_imports(path))
    }
    assert offenders == {}, "move these queries into photosieve.store"
