"""PDQ hash lists in and out of the known-bad bank (the text format HMA and ThreatExchange use).

One hash per line, as Meta's PDQ reference hasher prints it: `pdq_hex[,quality[,name]]` —
64 hex digits, then optionally the quality (0..100) and a name (the photo's or the list's).
Blank lines and lines starting with `#` are skipped; a header line `pdq,quality,name` is allowed.

Import is all or nothing: every line is checked first and any bad line (its number and what is
wrong) refuses the whole file. Hashes below the minimum quality are left out and counted (they
match unreliably), as are hashes the bank or the file already holds. Export writes the active
entries with a PDQ hash in the same format (name: the imported list's, or `photosieve:<id>`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from photosieve.store.models import KnownBadHash, utcnow
from photosieve.vision.pdq import normalise_hex

MAX_NAME_CHARS = 128
MAX_ERRORS_SHOWN = 20
HEADER = ("pdq", "quality", "name")
_BATCH = 5_000


@dataclass(frozen=True)
class ListedHash:
    """One line of a hash list."""

    pdq: str
    quality: int | None
    name: str | None


@dataclass
class ParsedList:
    """A checked hash list: the hashes to bank and what was left out."""

    hashes: list[ListedHash] = field(default_factory=list)
    low_quality: int = 0
    duplicates: int = 0


class HashListError(ValueError):
    """A hash list with bad lines; `problems` holds (line number, reason) of each."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        shown = "; ".join(f"line {n}: {why}" for n, why in problems[:MAX_ERRORS_SHOWN])
        more = len(problems) - MAX_ERRORS_SHOWN
        super().__init__(
            f"{len(problems)} bad line(s), nothing imported: {shown}"
            + (f"; and {more} more" if more > 0 else "")
        )


def _parse_line(cells: list[str]) -> ListedHash:
    pdq = normalise_hex(cells[0])
    quality = None
    if len(cells) > 1 and cells[1].strip():
        text = cells[1].strip()
        if not text.isdigit() or not 0 <= int(text) <= 100:
            raise ValueError(f"quality must be a whole number 0..100, not {text!r}")
        quality = int(text)
    name = cells[2].strip() if len(cells) > 2 and cells[2].strip() else None
    if name is not None and (len(name) > MAX_NAME_CHARS or not name.isprintable()):
        raise ValueError(f"name must be ≤ {MAX_NAME_CHARS} printable characters")
    return ListedHash(pdq, quality, name)


def parse(lines: Iterable[str], *, min_quality: int) -> ParsedList:
    """Check a hash list; HashListError listing every bad line, else the hashes to bank."""
    parsed, problems, seen = ParsedList(), [], set()
    for number, cells in enumerate(csv.reader(lines), start=1):
        if not cells or not "".join(cells).strip() or cells[0].lstrip().startswith("#"):
            continue
        if number == 1 and tuple(c.strip().lower() for c in cells[:3]) == HEADER[: len(cells)]:
            continue
        try:
            listed = _parse_line(cells)
        except ValueError as exc:
            problems.append((number, str(exc)))
            continue
        if listed.quality is not None and listed.quality < min_quality:
            parsed.low_quality += 1
        elif listed.pdq in seen:
            parsed.duplicates += 1
        else:
            seen.add(listed.pdq)
            parsed.hashes.append(listed)
    if problems:
        raise HashListError(problems)
    return parsed


def import_hashes(
    session: Session, hashes: list[ListedHash], *, list_name: str, confirmed: bool = True
) -> tuple[int, int]:
    """Bank `hashes` (flushed, not committed) as entries of `list_name`; returns (added, already
    in the bank as active entries)."""
    added = already = 0
    for start in range(0, len(hashes), _BATCH):
        batch = hashes[start : start + _BATCH]
        banked = set(
            session.scalars(
                select(KnownBadHash.pdq).where(
                    KnownBadHash.pdq.in_([h.pdq for h in batch]), KnownBadHash.active.is_(True)
                )
            )
        )
        now = utcnow()
        rows = [
            {
                "pdq": h.pdq,
                "pdq_quality": h.quality,
                "phash": None,
                "source_upload_id": None,
                "source_list": (h.name or list_name)[:MAX_NAME_CHARS],
                "confirmed": confirmed,
                "active": True,
                "added_at": now,
            }
            for h in batch
            if h.pdq not in banked
        ]
        if rows:
            session.execute(insert(KnownBadHash), rows)
        added += len(rows)
        already += len(batch) - len(rows)
    session.flush()
    return added, already


def export_rows(session: Session) -> Iterator[ListedHash]:
    """The active entries with a PDQ hash, oldest first."""
    entry = KnownBadHash
    query = (
        select(entry.id, entry.pdq, entry.pdq_quality, entry.source_list)
        .where(KnownBadHash.active.is_(True), KnownBadHash.pdq.is_not(None))
        .order_by(KnownBadHash.id)
    )
    for row in session.execute(query.execution_options(yield_per=_BATCH)):
        yield ListedHash(row.pdq, row.pdq_quality, row.source_list or f"photosieve:{row.id}")


def write(hashes: Iterable[ListedHash], out: TextIO) -> int:
    """Write a hash list (with its header line); returns how many hashes."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    count = 0
    for h in hashes:
        writer.writerow([h.pdq, "" if h.quality is None else h.quality, h.name or ""])
        count += 1
    return count
