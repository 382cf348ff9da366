"""Repository of the known-bad bank: perceptual hashes of removed photos (as in Meta's HMA).

An entry carries a 256-bit PDQ hash (matched through `pdq_bank.PdqBank`'s index) and/or the
older 64-bit pHash. `nearest` scans the pHashes of the entries without a PDQ hash (banked before
PDQ, or whose photo's PDQ quality was too low), vectorised with numpy: a few milliseconds for a
few hundred thousand entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from photosieve.store.models import KnownBadHash

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class BankMatch:
    """The nearest active bank entry within the distance limit."""

    entry_id: int
    source_upload_id: str | None  # None for an imported entry
    distance: int
    confirmed: bool
    hash: str = "phash"  # which hash matched: "phash" (64 bits) or "pdq" (256 bits)


def hamming(a: str, b: str) -> int:
    """Bits that differ between two 64-bit hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def nearest(session: Session, phash: str, max_distance: int) -> BankMatch | None:
    """The best active entry without a PDQ hash at most `max_distance` pHash bits from `phash`,
    or None (entries with a PDQ hash are matched by `pdq_bank.PdqBank`).

    Entries a person confirmed win over closer model-only ones (a confirmed match needs no
    second look); ties go to the smaller distance.
    """
    rows = session.execute(
        select(
            KnownBadHash.id,
            KnownBadHash.phash,
            KnownBadHash.source_upload_id,
            KnownBadHash.confirmed,
        ).where(
            KnownBadHash.active.is_(True),
            KnownBadHash.pdq.is_(None),
            KnownBadHash.phash.is_not(None),
        )
    ).all()
    if not rows:
        return None
    bank = np.array([int(row.phash, 16) for row in rows], dtype=np.uint64)
    xor = np.bitwise_xor(bank, np.uint64(int(phash, 16)))
    distances = _POPCOUNT[xor.view(np.uint8).reshape(-1, 8)].sum(axis=1).astype(np.int64)
    confirmed = np.array([bool(row.confirmed) for row in rows])
    within = distances <= max_distance
    if not within.any():
        return None
    best = best_of(distances, confirmed, within)
    row = rows[best]
    return BankMatch(row.id, row.source_upload_id, int(distances[best]), bool(row.confirmed))


def best_of(distances: np.ndarray, confirmed: np.ndarray, within: np.ndarray) -> int:
    """Position of the best match: within the limit, confirmed first, then nearest."""
    rank = np.where(within, distances - np.where(confirmed, 1000, 0), np.iinfo(np.int64).max)
    return int(np.argmin(rank))


def add(
    session: Session,
    phash: str,
    source_upload_id: str,
    *,
    confirmed: bool,
    decision_id: int | None = None,
    pdq: str | None = None,
    pdq_quality: int | None = None,
) -> KnownBadHash:
    """Add a removed photo's hashes to the bank (`pdq` only when its quality is high enough)."""
    entry = KnownBadHash(
        phash=phash,
        pdq=pdq,
        pdq_quality=pdq_quality if pdq is not None else None,
        source_upload_id=source_upload_id,
        confirmed=confirmed,
        active=True,
        decision_id=decision_id,
    )
    session.add(entry)
    session.flush()
    return entry


def deactivate_for_upload(
    session: Session,
    upload_id: str,
    decision_id: int,
    *,
    matched_upload_id: str | None = None,
    matched_entry_id: int | None = None,
) -> int:
    """Switch off the bank entries of a photo a person found ok; returns how many.

    When that photo had been removed as a near-match of `matched_upload_id` (entry
    `matched_entry_id`, which may be an imported one), that source's entries and that entry are
    switched off too unless a person confirmed them: the person has just judged its near-twin
    ok.
    """
    switched = 0
    sources = [(upload_id, False)]
    if matched_upload_id is not None:
        sources.append((matched_upload_id, True))
    for source, unconfirmed_only in sources:
        query = update(KnownBadHash).where(
            KnownBadHash.source_upload_id == source, KnownBadHash.active.is_(True)
        )
        if unconfirmed_only:
            query = query.where(KnownBadHash.confirmed.is_(False))
        result = session.execute(query.values(active=False, deactivated_by=decision_id))
        switched += int(result.rowcount)  # type: ignore[attr-defined]
    if matched_entry_id is not None:
        result = session.execute(
            update(KnownBadHash)
            .where(
                KnownBadHash.id == matched_entry_id,
                KnownBadHash.active.is_(True),
                KnownBadHash.confirmed.is_(False),
            )
            .values(active=False, deactivated_by=decision_id)
        )
        switched += int(result.rowcount)  # type: ignore[attr-defined]
    return switched


def revert_decision(session: Session, decision_id: int) -> None:
    """Undo a decision's effect on the bank: drop what it added, restore what it switched off."""
    session.execute(delete(KnownBadHash).where(KnownBadHash.decision_id == decision_id))
    session.execute(
        update(KnownBadHash)
        .where(KnownBadHash.deactivated_by == decision_id)
        .values(active=True, deactivated_by=None)
    )


def count_active(session: Session) -> int:
    """How many hashes are in force."""
    query = select(func.count()).select_from(KnownBadHash).where(KnownBadHash.active.is_(True))
    return int(session.scalar(query) or 0)
