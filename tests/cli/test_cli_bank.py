"""`photosieve bank import|export`: hash lists in and out of a workdir's bank, all or nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from typer.testing import CliRunner

from photosieve.cli import app
from photosieve.cli.database import open_database
from photosieve.store.models import KnownBadHash
from photosieve.store.pdq_index import codes_to_hex


def _hashes(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return codes_to_hex(rng.integers(0, 2**64 - 1, (n, 4), dtype=np.uint64, endpoint=True))


def _banked(workdir: Path) -> int:
    with open_database(workdir) as session:
        return int(session.scalar(select(func.count()).select_from(KnownBadHash)) or 0)


def test_import_then_export_round_trips(tmp_path: Path) -> None:
    runner, w = CliRunner(), str(tmp_path / "w")
    h = _hashes(3)
    listed = tmp_path / "list.csv"
    listed.write_text(f"{h[0]},100,a.jpg\n{h[1]},30,blurry.jpg\n{h[2]}\n", encoding="utf-8")
    result = runner.invoke(app, ["bank", "--workdir", w, "import", str(listed)])
    assert result.exit_code == 0, result.output
    assert "banked 2 PDQ hashes" in result.output and "1 below quality 50" in result.output
    again = runner.invoke(app, ["bank", "--workdir", w, "import", str(listed)])
    assert "banked 0 PDQ hashes" in again.output and "2 already banked" in again.output
    out = tmp_path / "out.csv"
    exported = runner.invoke(app, ["bank", "--workdir", w, "export", str(out)])
    assert exported.exit_code == 0, exported.output
    assert out.read_text(encoding="utf-8").splitlines() == [
        "pdq,quality,name", f"{h[0]},100,a.jpg", f"{h[2]},,list.csv"
    ]  # fmt: skip
    # The export is a hash list the import reads (another photosieve, HMA).
    elsewhere = str(tmp_path / "w2")
    imported = runner.invoke(app, ["bank", "--workdir", elsewhere, "import", str(out)])
    assert "banked 2 PDQ hashes" in imported.output
    assert _banked(tmp_path / "w2") == 2


def test_a_bad_line_refuses_the_whole_file(tmp_path: Path) -> None:
    h = _hashes(2)
    listed = tmp_path / "list.csv"
    listed.write_text(f"{h[0]}\n{h[1][:-2]}\n{h[1]},9000\n", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["bank", "--workdir", str(tmp_path / "w"), "import", str(listed)]
    )
    assert result.exit_code == 1
    assert "line 2: a PDQ hash has 64 hex digits, not 62" in result.output
    assert "line 3: quality must be a whole number 0..100" in result.output
    assert _banked(tmp_path / "w") == 0
    missing = CliRunner().invoke(app, ["bank", "import", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "cannot read" in missing.output
