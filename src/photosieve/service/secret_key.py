"""The key that signs session cookies: configured (`PHOTOSIEVE_SECRET_KEY`) or generated once.

Without a configured key, the first start writes a random 256-bit key to
`<workdir>/service/secret_key` with mode 0600 and every later start (and every worker on the
same host) reads the same file, so cookies survive restarts. The file is created atomically
(written to a temporary name, then hard-linked into place), so two workers starting at once
agree on one key. A file that others may read is tightened to 0600 with a warning; one holding
a weak key is refused like a weak configured key.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from photosieve.service.config import Settings, check_secret

log = logging.getLogger(__name__)


def resolve_secret_key(settings: Settings) -> str:
    """The configured key, or the generated one in `settings.secret_key_file` (created once)."""
    if settings.secret_key is not None:
        return settings.secret_key
    return load_or_create(settings.secret_key_file)


def load_or_create(path: Path) -> str:
    """The key stored at `path`; a new random one is written there (mode 0600) if it is absent."""
    if not path.exists():
        _create(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("secret key file %s had mode %o; tightened to 0600", path, mode)
        path.chmod(0o600)
    return check_secret(path.read_text().strip(), origin=f"the secret key in {path}")


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)  # fails if another process created the file first: use theirs
            log.warning("created a new session secret key in %s", path)
        except FileExistsError:
            pass
    finally:
        temp.unlink(missing_ok=True)
