"""The import contract (`[tool.importlinter]`, pyproject.toml): kept by the tree, and able to fail.

Runs `lint-imports` on a scratch copy of the package, first as it is, then with one upward import
added inside a function of the lowest layer (records → cli), which must break the contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import photosieve

ROOT = Path(__file__).resolve().parents[1]


def _lint(project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    command = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)


def test_contract_is_kept_and_an_upward_import_breaks_it(tmp_path: Path) -> None:
    package = tmp_path / "src" / "photosieve"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(Path(photosieve.__file__).parent, package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")

    kept = _lint(tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr

    records = package / "records.py"
    records.write_text(
        records.read_text()
        + "\n\ndef _upward() -> None:\n    from photosieve.cli import app  # noqa\n"
    )
    broken = _lint(tmp_path)
    assert broken.returncode != 0
    assert "photosieve.records -> photosieve.cli" in broken.stdout
