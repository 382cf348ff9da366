"""The PDQ index finds exactly what a brute-force scan finds, at every radius up to 31."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from photosieve.store.pdq_index import (
    CHUNK_WIDTHS,
    MAX_RADIUS,
    PdqIndex,
    chunk_values,
    codes_to_hex,
    distances,
    hex_to_codes,
)


def _random_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)


def _flip(code: np.ndarray, bits: np.ndarray) -> np.ndarray:
    out = code.copy()
    for bit in bits:
        out[bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    return out


def _brute(codes: np.ndarray, ids: np.ndarray, queries: np.ndarray, radius: int) -> list:
    d = np.min([distances(codes, q) for q in queries], axis=0)
    within = np.nonzero(d <= radius)[0]
    return sorted((int(ids[i]), int(d[i])) for i in within)


def _near_queries(rng: np.random.Generator, codes: np.ndarray, count: int) -> np.ndarray:
    """Banked codes with 0..40 bits flipped (matches up to 31, misses beyond), plus strangers."""
    queries = []
    for _ in range(count):
        base = codes[rng.integers(0, len(codes))]
        flipped = rng.choice(256, size=int(rng.integers(0, 41)), replace=False)
        queries.append(_flip(base, flipped))
    return np.array(queries + list(_random_codes(rng, 2)), dtype=np.uint64)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3000), radius=st.integers(0, MAX_RADIUS))
@settings(max_examples=40, deadline=None)
def test_index_agrees_with_brute_force(seed: int, n: int, radius: int) -> None:
    rng = np.random.default_rng(seed)
    codes = _random_codes(rng, n)
    # Planted near-duplicates, as re-uploads are: a few bits from a banked hash.
    planted = np.array([_flip(c, rng.choice(256, int(rng.integers(0, 32)), replace=False))
                        for c in codes[: n // 10]], dtype=np.uint64).reshape(-1, 4)  # fmt: skip
    codes = np.concatenate([codes, planted])
    ids = rng.permutation(len(codes)).astype(np.int64) + 1000
    index = PdqIndex().build(codes, ids)
    queries = _near_queries(rng, codes, 8)
    for q in range(0, len(queries), 4):  # several queries at once, like a photo's variants
        batch = queries[q : q + 4]
        expected = _brute(codes, ids, batch, radius)
        found = index.search(batch, radius)
        assert sorted(found) == expected
        assert [d for _, d in found] == sorted(d for _, d in found)  # nearest first


def test_every_distance_up_to_31_is_found_and_32_is_not() -> None:
    rng = np.random.default_rng(7)
    codes = _random_codes(rng, 20_000)
    index = PdqIndex().build(codes, np.arange(len(codes)))
    for distance in range(0, 40):
        target = int(rng.integers(0, len(codes)))
        query = _flip(codes[target], rng.choice(256, distance, replace=False))
        hits = dict(index.search(query[None, :], MAX_RADIUS))
        assert (target in hits) == (distance <= MAX_RADIUS)
        if distance <= MAX_RADIUS:
            assert hits[target] == distance


def test_worst_case_spread_of_31_bits_is_found() -> None:
    """31 flipped bits spread so that few chunks differ in ≤ 2 bits (3 in every other): the
    pigeonhole bound the chunking relies on, at its edge."""
    rng = np.random.default_rng(11)
    codes = _random_codes(rng, 5000)
    index = PdqIndex().build(codes, np.arange(len(codes)))
    starts = np.cumsum((0, *CHUNK_WIDTHS[:-1]))
    key_bits = index._tables.key_bits  # flips in the bits that pick a chunk's bucket
    for lucky in range(len(CHUNK_WIDTHS)):
        per_chunk = [3] * len(CHUNK_WIDTHS)
        per_chunk[lucky] = 1  # 10 × 3 + 1 = 31
        if lucky % 2:
            per_chunk[lucky], per_chunk[(lucky + 1) % len(CHUNK_WIDTHS)] = 2, 2  # 9 × 3 + 2 + 2
            per_chunk[(lucky + 2) % len(CHUNK_WIDTHS)] = 2  # ... = 30: still one chunk at 2
        bits = np.concatenate([
            starts[c] + rng.choice(min(CHUNK_WIDTHS[c], key_bits), k, replace=False)
            for c, k in enumerate(per_chunk)
        ])  # fmt: skip
        target = int(rng.integers(0, len(codes)))
        query = _flip(codes[target], bits)
        assert (target, len(bits)) in index.search(query[None, :], MAX_RADIUS)


def test_additions_are_found_before_and_after_the_tables_are_rebuilt() -> None:
    rng = np.random.default_rng(3)
    codes = _random_codes(rng, 500)
    index = PdqIndex(delta_limit=64).build(codes[:100], np.arange(100))
    for start in range(100, 500, 50):  # through the delta, and over its limit (rebuilds)
        index.add(codes[start : start + 50], np.arange(start, start + 50))
        index.join()
        assert len(index) == start + 50
        queries = _near_queries(rng, codes[: start + 50], 3)
        expected = _brute(codes[: start + 50], np.arange(start + 50), queries, 31)
        assert sorted(index.search(queries, 31)) == expected
    assert len(index._delta[1]) < 64  # the delta was folded into the tables


def test_concurrent_additions_and_lookups() -> None:
    rng = np.random.default_rng(5)
    codes = _random_codes(rng, 4000)
    index = PdqIndex(delta_limit=300).build(codes[:1000], np.arange(1000))
    errors: list[BaseException] = []

    def add() -> None:
        for start in range(1000, 4000, 100):
            index.add(codes[start : start + 100], np.arange(start, start + 100))

    def look() -> None:
        try:
            for i in range(200):  # the first 1000 are always there
                assert (i, 0) in index.search(codes[i][None, :], 31)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add)] + [threading.Thread(target=look) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    index.join()
    assert not errors
    assert len(index) == 4000
    assert sorted(index.search(codes[3999][None, :], 0)) == [(3999, 0)]


def test_hex_round_trip_and_chunks_cover_every_bit() -> None:
    hexes = ["f" * 64, "0" * 64, "0123456789abcdef" * 4]
    codes = hex_to_codes(hexes)
    assert codes_to_hex(codes) == hexes
    # A single set bit shows up in exactly one chunk, at the right place.
    for bit in (0, 23, 24, 63, 64, 100, 255):
        code = _flip(np.zeros(4, np.uint64), np.array([bit]))[None, :]
        values = [int(chunk_values(code, c)[0]) for c in range(len(CHUNK_WIDTHS))]
        assert sum(v.bit_count() for v in values) == 1


def test_out_of_range_radius_is_refused() -> None:
    index = PdqIndex()
    assert index.search(np.zeros((1, 4), np.uint64), 31) == []
    with pytest.raises(ValueError, match="max_distance"):
        index.search(np.zeros((1, 4), np.uint64), 32)
