"""Which heavy libraries a module loads when imported in a fresh interpreter (start-up tests)."""

from __future__ import annotations

import subprocess
import sys


def loaded_on_import(module: str, candidates: set[str]) -> list[str]:
    """The names in `candidates` that `import module` puts in `sys.modules`, sorted."""
    wanted = sorted(candidates)
    code = f"import sys, {module}\nprint(','.join(sorted(set({wanted!r}) & set(sys.modules))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.strip().split(",") if name]
