"""Where photosieve keeps its working files (embedding cache, ONNX exports, bundles).

Default `./work` under the current directory; `PHOTOSIEVE_WORKDIR` or a command's `--workdir`
overrides it. Read at call time, never at import.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_workdir() -> Path:
    """The working folder: `$PHOTOSIEVE_WORKDIR` or `./work`."""
    return Path(os.environ.get("PHOTOSIEVE_WORKDIR", "work")).resolve()


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
