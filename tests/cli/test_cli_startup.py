"""`photosieve` starts light: importing the CLI loads neither torch, scikit-learn nor scipy.stats.

Every command pays for what the CLI imports, and so does every worker process of `photosieve
score --engine local`: a spawned worker re-imports its parent's main module (the CLI) before its
first photo. The heavy libraries load inside the commands and functions that use them.
"""

from __future__ import annotations

from import_check import loaded_on_import


def test_importing_the_cli_loads_no_heavy_library() -> None:
    assert loaded_on_import("photosieve.cli", {"torch", "sklearn", "scipy.stats"}) == []
