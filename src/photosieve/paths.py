"""Where photosieve finds its folders: the working folder's root and the benchmark data.

The working folder's layout is `photosieve.config.Workdir`; this module only answers "which
root" (`$PHOTOSIEVE_WORKDIR` or `./work`, read at call time) and where `../shared/data` is.
"""

from __future__ import annotations

import os
from pathlib import Path

from photosieve.config import Workdir


def default_workdir() -> Path:
    """The working folder's root: `$PHOTOSIEVE_WORKDIR` or `./work` (see `config.Workdir`)."""
    return Workdir.default().root


def shared_data_dir() -> Path | None:
    """`../shared/data` beside the checkout (benchmark photos), if present."""
    env = os.environ.get("PHOTOSIEVE_SHARED_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data"
        if (parent / "pyproject.toml").is_file() and candidate.is_dir():
            return candidate
    return None
