"""The bank's PDQ index follows the database (other sessions' additions, late commits,
switched-off entries) and hash lists go in and out of it, on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sqlalchemy import Engine, insert, update
from sqlalchemy.orm import Session

from photosieve.store import bank, hashlist, uploads
from photosieve.store.db import make_sessionmaker, migrate
from photosieve.store.models import KnownBadHash, utcnow
from photosieve.store.pdq_bank import PdqBank
from photosieve.store.pdq_index import codes_to_hex, hex_to_codes
from upload_rows import new_upload


def _hashes(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return codes_to_hex(rng.integers(0, 2**64 - 1, (n, 4), dtype=np.uint64, endpoint=True))


def _near(hex_hash: str, bits: int) -> str:
    """`hex_hash` with its first `bits` bits flipped."""
    value = int(hex_hash, 16) ^ (((1 << bits) - 1) << (256 - bits))
    return f"{value:064x}"


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _insert(session: Session, entry_id: int | None, pdq: str, **fields: object) -> None:
    row = {"pdq": pdq, "confirmed": True, "active": True, "added_at": utcnow(), **fields}
    if entry_id is not None:
        row["id"] = entry_id
    session.execute(insert(KnownBadHash), [row])


def test_lookups_follow_the_database(engine: Engine) -> None:
    migrate(engine)
    sessions = make_sessionmaker(engine)
    h = _hashes(1, 4)
    with sessions() as session:
        upload = uploads.insert(session, new_upload(1))
        bank.add(session, "0" * 16, upload.id, confirmed=False, pdq=h[0], pdq_quality=90)
        session.commit()
        pdq_bank = PdqBank().load(session)
        hit = pdq_bank.nearest(session, [_near(h[0], 30)], 31)
        assert hit is not None and hit.hash == "pdq" and hit.distance == 30
        assert hit.source_upload_id == upload.id and not hit.confirmed
        assert pdq_bank.nearest(session, [_near(h[0], 32)], 31) is None
        assert pdq_bank.nearest(session, [h[1]], 31) is None
    with sessions() as other:  # another process banks a hash: seen at the next lookup
        _insert(other, None, h[1], source_list="list.csv")
        other.commit()
    with sessions() as session:
        hit = pdq_bank.nearest(session, [h[3], _near(h[1], 5)], 31)  # any of the variants
        assert hit is not None and hit.source_upload_id is None and hit.confirmed
        # Switched off by a person: the index still proposes it, the database says no.
        session.execute(update(KnownBadHash).values(active=False))
        session.commit()
        assert pdq_bank.nearest(session, [h[0]], 31) is None
        assert len(pdq_bank.index) == 2
        # The pHash scan leaves entries with a PDQ hash to the index.
        assert bank.nearest(session, "0" * 16, 6) is None


def test_an_entry_committed_after_a_newer_one_is_found(engine: Engine) -> None:
    migrate(engine)
    sessions = make_sessionmaker(engine)
    h = _hashes(2, 4)
    clock = _Clock()
    with sessions() as session:
        _insert(session, 10, h[0])
        session.commit()
        pdq_bank = PdqBank(clock=clock, gap_seconds=60).load(session)
        _insert(session, 13, h[1])
        session.commit()
        assert pdq_bank.refresh(session) == 1  # ids 11 and 12 are not visible yet
        _insert(session, 12, h[2])  # a transaction that took id 12 commits late
        session.commit()
        assert pdq_bank.nearest(session, [h[2]], 0) is not None
        clock.now = 120.0  # id 11 never came (rolled back): after a while it is given up
        assert pdq_bank.refresh(session) == 0
        _insert(session, 11, h[3])
        session.commit()
        assert pdq_bank.refresh(session) == 0
        assert pdq_bank.nearest(session, [h[3]], 0) is None
        assert len(pdq_bank.index) == 3


def test_hash_list_round_trip(engine: Engine) -> None:
    migrate(engine)
    sessions = make_sessionmaker(engine)
    h = _hashes(3, 5)
    text = (
        "pdq,quality,name\n"
        f"{h[0]},100,cat.jpg\n"
        "# a comment\n\n"
        f"{h[1].upper()},60\n"
        f"{h[2]}\n"
        f"{h[3]},20,blurry.jpg\n"  # below the minimum quality: left out
        f"{h[0]},90,again.jpg\n"  # repeated in the file
    )
    parsed = hashlist.parse(io.StringIO(text), min_quality=50)
    assert [x.pdq for x in parsed.hashes] == h[:3]
    assert parsed.low_quality == 1 and parsed.duplicates == 1
    with sessions() as session:
        upload = uploads.insert(session, new_upload(1))
        bank.add(session, "0" * 16, upload.id, confirmed=True, pdq=h[4], pdq_quality=80)
        bank.add(session, "1" * 16, upload.id, confirmed=True)  # pHash only: not exported
        assert hashlist.import_hashes(session, parsed.hashes, list_name="tx.csv") == (3, 0)
        assert hashlist.import_hashes(session, parsed.hashes[:1], list_name="tx.csv") == (0, 1)
        session.commit()
        out = io.StringIO()
        assert hashlist.write(hashlist.export_rows(session), out) == 4
    again = hashlist.parse(io.StringIO(out.getvalue()), min_quality=50)
    assert {(x.pdq, x.quality) for x in again.hashes} == {
        (h[4], 80), (h[0], 100), (h[1], 60), (h[2], None)
    }  # fmt: skip
    names = {x.pdq: x.name for x in again.hashes}
    assert names[h[0]] == "cat.jpg" and names[h[2]] == "tx.csv"
    assert names[h[4]].startswith("photosieve:")
    assert list(hex_to_codes([h[0]])[0]) == list(hex_to_codes([h[0].upper().lower()])[0])


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("abc", "a PDQ hash has 64 hex digits, not 3"),
        ("g" * 64, "a PDQ hash has only hex digits"),
        ("a" * 64 + ",101", "quality must be a whole number 0..100"),
        ("a" * 64 + ",high", "quality must be a whole number"),
        ("a" * 64 + ",90," + "n" * 200, "name must be"),
    ],
)
def test_bad_lines_are_named_and_nothing_is_parsed(line: str, reason: str) -> None:
    good = "b" * 64
    with pytest.raises(hashlist.HashListError, match=f"line 3: {reason}") as caught:
        hashlist.parse(io.StringIO(f"{good}\n# fine\n{line}\n{good[:-1]}c\n"), min_quality=50)
    assert [n for n, _ in caught.value.problems] == [3]
