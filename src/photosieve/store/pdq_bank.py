"""The known-bad bank's PDQ hashes in an in-memory index, kept in step with the database.

`PdqBank.load` builds the index from every bank entry with a PDQ hash (streamed, at start-up);
before each lookup `refresh` adds the entries committed since — by this process or any other
(another worker, `photosieve bank import`). Entries are found by id: `id > last seen`, plus the
ids below it that were not yet visible ("gaps": a transaction that took its id earlier but
committed later), re-read for `gap_seconds` before they are taken for rolled back.

The index only proposes candidates within the distance; whether an entry is still active (a
person may have switched it off, an undo may have deleted it) and who confirmed it is read from
the database for those few ids, so the database stays the one source of truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Row, bindparam, or_, select
from sqlalchemy.orm import Session

from photosieve.store.bank import BankMatch, best_of
from photosieve.store.models import KnownBadHash
from photosieve.store.pdq_index import PdqIndex, hex_to_codes

GAP_SECONDS = 600.0  # how long an unseen id below the newest is waited for
LOAD_BATCH = 200_000  # rows per fetch when the index is built
RECENT_IDS = 1_000  # at load, holes among the newest ids are waited for like gaps
MAX_GAPS = 64  # unseen id ranges looked for at once
_NEWER = select(KnownBadHash.id, KnownBadHash.pdq)
_NEWER_THAN = _NEWER.where(KnownBadHash.id > bindparam("after")).order_by(KnownBadHash.id)


@dataclass
class _Gap:
    lo: int
    hi: int  # inclusive
    since: float


class PdqBank:
    """PDQ lookups over the bank through a `PdqIndex` (see the module docstring)."""

    def __init__(
        self,
        *,
        index: PdqIndex | None = None,
        gap_seconds: float = GAP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = index if index is not None else PdqIndex()
        self.gap_seconds = gap_seconds
        self.clock = clock
        self._sync = threading.Lock()
        self._max_seen = 0
        self._gaps: list[_Gap] = []
        self._loaded = False

    def load(self, session: Session) -> PdqBank:
        """Build the index from every bank entry with a PDQ hash (active or not)."""
        with self._sync:
            codes, ids, all_ids = [], [], []
            query = select(KnownBadHash.id, KnownBadHash.pdq).order_by(KnownBadHash.id)
            result = session.execute(query.execution_options(yield_per=LOAD_BATCH))
            for part in result.partitions():
                block = np.array([row.id for row in part], np.int64)
                all_ids.append(block)
                hashed = [(row.id, row.pdq) for row in part if row.pdq]
                if hashed:
                    ids.append(np.array([i for i, _ in hashed], np.int64))
                    codes.append(hex_to_codes([h for _, h in hashed]))
            self.index.build(
                np.concatenate(codes) if codes else np.zeros((0, 4), np.uint64),
                np.concatenate(ids) if ids else np.zeros(0, np.int64),
            )
            seen = np.concatenate(all_ids) if all_ids else np.zeros(0, np.int64)
            self._max_seen = int(seen[-1]) if len(seen) else 0
            recent = seen[seen > self._max_seen - RECENT_IDS]
            self._gaps = []
            self._note_gaps(recent, max(self._max_seen - RECENT_IDS, 0))
            self._loaded = True
        return self

    def refresh(self, session: Session) -> int:
        """Add the entries committed since the last look; returns how many PDQ hashes."""
        if not self._loaded:
            self.load(session)
            return len(self.index)
        with self._sync:
            now = self.clock()
            self._gaps = [g for g in self._gaps if now - g.since < self.gap_seconds]
            self._gaps = self._gaps[-MAX_GAPS:]  # the oldest given up first
            if self._gaps:
                unseen = [KnownBadHash.id > self._max_seen]
                unseen += [KnownBadHash.id.between(g.lo, g.hi) for g in self._gaps]
                query = _NEWER.where(or_(*unseen))
                fresh = session.execute(query.order_by(KnownBadHash.id)).all()
            else:  # the usual case, once per upload: one statement built once
                fresh = session.execute(_NEWER_THAN, {"after": self._max_seen}).all()
            if not fresh:
                return 0
            fresh_ids = np.array([row.id for row in fresh], np.int64)
            self._fill_gaps(fresh_ids)
            old_max = self._max_seen
            self._max_seen = max(old_max, int(fresh_ids[-1]))
            self._note_gaps(fresh_ids[fresh_ids > old_max], old_max)
            hashed = [row for row in fresh if row.pdq]
            if hashed:
                self.index.add(
                    hex_to_codes([row.pdq for row in hashed]),
                    np.array([row.id for row in hashed], np.int64),
                )
            return len(hashed)

    def nearest(
        self, session: Session, variants: Sequence[str], max_distance: int
    ) -> BankMatch | None:
        """The best active entry within `max_distance` bits of any of the photo's PDQ hashes
        (e.g. its 8 dihedral variants): confirmed entries first, then the nearest."""
        if not variants:
            return None
        self.refresh(session)
        hits = self.index.search(hex_to_codes(list(variants)), max_distance)
        if not hits:
            return None
        rows: list[Row[int, str | None, str | None, bool]] = []
        ids = [entry_id for entry_id, _ in hits]
        for start in range(0, len(ids), 1000):
            rows += session.execute(
                select(
                    KnownBadHash.id,
                    KnownBadHash.pdq,
                    KnownBadHash.source_upload_id,
                    KnownBadHash.confirmed,
                )
                .where(KnownBadHash.id.in_(ids[start : start + 1000]))
                .where(KnownBadHash.active.is_(True), KnownBadHash.pdq.is_not(None))
            ).all()
        if not rows:
            return None
        # Distances from the stored hashes: the database, not the index, has the last word.
        stored = hex_to_codes([row.pdq for row in rows])
        queries = hex_to_codes(list(variants))
        d = np.bitwise_count(stored[:, None, :] ^ queries[None, :, :]).sum(axis=2).min(axis=1)
        confirmed = np.array([bool(row.confirmed) for row in rows])
        best = best_of(d.astype(np.int64), confirmed, d <= max_distance)
        if d[best] > max_distance:
            return None
        row = rows[best]
        return BankMatch(row.id, row.source_upload_id, int(d[best]), bool(row.confirmed), "pdq")

    # ---- gaps: ids below the newest seen that were not visible yet -----------------------
    def _in_gap(self, entry_id: int) -> bool:
        return any(g.lo <= entry_id <= g.hi for g in self._gaps)

    def _note_gaps(self, ids: np.ndarray, after: int) -> None:
        """Record the ids in (after, max(ids)] missing from the sorted `ids` as gaps."""
        now = self.clock()
        previous = np.concatenate([[after], ids])
        holes = np.nonzero(np.diff(previous) > 1)[0]
        for i in holes:
            self._gaps.append(_Gap(int(previous[i]) + 1, int(previous[i + 1]) - 1, now))

    def _fill_gaps(self, ids: np.ndarray) -> None:
        """Take the now visible `ids` out of the gaps (splitting them)."""
        kept: list[_Gap] = []
        for gap in self._gaps:
            inside = ids[(ids >= gap.lo) & (ids <= gap.hi)]
            if not len(inside):
                kept.append(gap)
                continue
            self._note_holes(kept, gap, inside)
        self._gaps = kept

    @staticmethod
    def _note_holes(kept: list[_Gap], gap: _Gap, inside: np.ndarray) -> None:
        bounds = np.concatenate([[gap.lo - 1], inside, [gap.hi + 1]])
        for lo, hi in zip(bounds[:-1] + 1, bounds[1:] - 1, strict=True):
            if lo <= hi:
                kept.append(_Gap(int(lo), int(hi), gap.since))
