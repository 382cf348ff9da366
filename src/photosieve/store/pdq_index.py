"""In-memory index of 256-bit PDQ hashes for Hamming-radius lookups (multi-index hashing).

The 256 bits are cut into 11 chunks (3 of 24 bits, 8 of 23). By the pigeonhole principle a
hash within 31 bits of a query differs in at most 2 bits in at least one chunk (11 chunks × 3 =
33 > 31), so probing each chunk's table with every value within 2 bits of the query's chunk
(277-301 probes) finds every match; candidates are then verified with a popcount of the XOR.

A chunk's buckets are keyed by its top `k` bits, with `2^k` about the bank size (`k` ≤ chunk
width): ~1 entry a bucket, so a lookup with a photo's 8 dihedral hashes probes ~24k buckets and
verifies ~29k candidates at 10M hashes. All chunks' buckets live in one CSR postings list.
Memory: hashes 32 B + id 8 B + postings 11 × 4 B an entry, plus 11 × 2^k × 4 B of bucket
offsets — 1.15 GB at 10M (k = 23), 1 MB at 10k (`bench/hash_bank.py`).

Additions go to a small delta scanned by brute force; when it reaches `delta_limit` the tables
are rebuilt in a background thread (from a snapshot, outside the lock) and swapped in, so no
lookup waits for a rebuild (50–80 s at 10M on the 2-core box). Lookups and additions are
thread-safe. The index knows nothing of the database: `pdq_bank.PdqBank` keeps it in step.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import cache

import numpy as np

BITS = 256
MAX_RADIUS = 31  # the largest distance the chunking guarantees to find (HMA's PDQ default)
CHUNK_WIDTHS = (24, 24, 24) + (23,) * 8  # sum 256; 11 chunks × (radius 2 + 1) > 31
CHUNK_RADIUS = 2
DELTA_LIMIT = 20_000  # additions scanned linearly (≈1 ms a lookup) before a rebuild
_STARTS = tuple(int(s) for s in np.cumsum((0, *CHUNK_WIDTHS[:-1])))
assert sum(CHUNK_WIDTHS) == BITS and len(CHUNK_WIDTHS) * (CHUNK_RADIUS + 1) > MAX_RADIUS


@cache
def _flip_masks(width: int, radius: int) -> np.ndarray:
    """Every `width`-bit value with at most `radius` bits set, as uint32."""
    masks = [0]
    if radius >= 1:
        masks += [1 << i for i in range(width)]
    if radius >= 2:
        masks += [(1 << i) | (1 << j) for i in range(width) for j in range(i + 1, width)]
    assert radius <= 2
    return np.array(masks, dtype=np.uint32)


def hex_to_codes(hexes: list[str] | np.ndarray) -> np.ndarray:
    """64-hex-digit hashes as an (N, 4) uint64 array of big-endian words (bit 0 first)."""
    raw = bytes.fromhex("".join(hexes))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 4)


def codes_to_hex(codes: np.ndarray) -> list[str]:
    """The inverse of `hex_to_codes`."""
    raw = np.ascontiguousarray(codes, dtype=np.uint64).astype(">u8").tobytes()
    return [raw[i : i + 32].hex() for i in range(0, len(raw), 32)]


def chunk_values(codes: np.ndarray, chunk: int) -> np.ndarray:
    """Chunk `chunk` of each (N, 4) code as uint32 (bits counted from the most significant)."""
    start, width = _STARTS[chunk], CHUNK_WIDTHS[chunk]
    word, offset = divmod(start, 64)
    value = codes[:, word] << np.uint64(offset)  # chunk's first bit now the word's top bit
    if offset + width > 64:  # the chunk runs into the next word
        value = value | (codes[:, word + 1] >> np.uint64(64 - offset))
    return (value >> np.uint64(64 - width)).astype(np.uint32)


def distances(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distances between each (N, 4) code and one (4,) or (N, 4) query."""
    bits = np.bitwise_count(np.bitwise_xor(codes, query))  # (N, 4) uint8
    total = bits[:, 0].astype(np.int16)  # four column adds beat a row-wise sum
    total += bits[:, 1]
    total += bits[:, 2]
    total += bits[:, 3]
    return total


@dataclass(frozen=True)
class _Tables:
    """Immutable CSR tables over `codes`: swapped whole, never changed in place.

    The 11 chunks' buckets are numbered one after the other (chunk c's bucket b is
    `bases[c] + b`), so one gather serves every chunk: bucket g holds
    `postings[offsets[g]:offsets[g + 1]]`, the rows whose chunk has that key.
    """

    codes: np.ndarray  # (n, 4) uint64
    ids: np.ndarray  # (n,) int64, the caller's ids
    key_bits: int
    bases: tuple[int, ...]  # first bucket number of each chunk
    offsets: np.ndarray  # (Σ 2^k_c + 1,) uint32 start of each bucket in `postings`
    postings: np.ndarray  # (11 n,) uint32 rows, chunk after chunk, by bucket

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.codes, self.ids, self.offsets, self.postings))


def _no_codes() -> np.ndarray:
    return np.zeros((0, 4), np.uint64)


def _no_ids() -> np.ndarray:
    return np.zeros(0, np.int64)


def _key_bits(n: int) -> int:
    return max(8, round(math.log2(max(n, 1))))


def _chunk_keys(key_bits: int) -> list[int]:
    return [min(width, key_bits) for width in CHUNK_WIDTHS]


def _build(codes: np.ndarray, ids: np.ndarray) -> _Tables:
    n = len(codes)
    key_bits = _key_bits(n)
    keys = _chunk_keys(key_bits)
    bases = tuple(int(b) for b in np.cumsum([0] + [1 << k for k in keys[:-1]]))
    offsets = np.empty(bases[-1] + (1 << keys[-1]) + 1, np.uint32)
    postings = np.empty(len(CHUNK_WIDTHS) * n, np.uint32)
    for chunk, (width, k) in enumerate(zip(CHUNK_WIDTHS, keys, strict=True)):
        buckets = chunk_values(codes, chunk) >> np.uint32(width - k)
        postings[chunk * n : (chunk + 1) * n] = np.argsort(buckets, kind="stable")
        counts = np.bincount(buckets, minlength=1 << k)
        starts = offsets[bases[chunk] : bases[chunk] + (1 << k)]
        np.cumsum(counts, out=starts)
        starts -= counts.astype(np.uint32)
        starts += np.uint32(chunk * n)
        del buckets, counts
    offsets[-1] = len(postings)
    return _Tables(codes, ids, key_bits, bases, offsets, postings)


@cache
def _probe_plan(n_queries: int, key_bits: int) -> tuple[np.ndarray, ...]:
    """Per chunk the XOR masks of its probes, and the query each probe of a lookup serves."""
    masks = [_flip_masks(k, CHUNK_RADIUS) for k in _chunk_keys(key_bits)]
    owner = np.concatenate([np.repeat(np.arange(n_queries), len(m)) for m in masks])
    return (owner, *masks)


def _expand(starts: np.ndarray, ends: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, ...]:
    """All positions in the ranges [starts, ends), and the `owner` of the range each came from."""
    lengths = (ends - starts).astype(np.int64)
    before = np.cumsum(lengths) - lengths
    positions = np.repeat(starts - before, lengths) + np.arange(before[-1] + lengths[-1])
    return positions, np.repeat(owner, lengths)


class PdqIndex:
    """Hamming-radius search over PDQ hashes (see the module docstring)."""

    def __init__(self, *, delta_limit: int = DELTA_LIMIT, background: bool = True) -> None:
        self.delta_limit = delta_limit
        self.background = background  # rebuild in a thread (False: in the adding call)
        self._lock = threading.Lock()
        self._tables = _build(_no_codes(), _no_ids())
        self._delta: tuple[np.ndarray, np.ndarray] = (_no_codes(), _no_ids())
        self._generation = 0  # bumped by `build`: a rebuild of older contents is dropped
        self._rebuilder: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._tables.ids) + len(self._delta[1])

    @property
    def nbytes(self) -> int:
        """Memory held by the tables and the delta."""
        return self._tables.nbytes + sum(a.nbytes for a in self._delta)

    def build(self, codes: np.ndarray, ids: np.ndarray) -> PdqIndex:
        """Replace the contents with (N, 4) uint64 `codes` and their int64 `ids`."""
        if codes.ndim != 2 or codes.shape[1] != 4 or len(codes) != len(ids):
            raise ValueError("codes must be (N, 4) uint64 with one id each")
        tables = _build(np.ascontiguousarray(codes, np.uint64), np.asarray(ids, np.int64))
        with self._lock:
            self._tables = tables
            self._delta = (_no_codes(), _no_ids())
            self._generation += 1
        return self

    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Add hashes (found at once); the tables are rebuilt with them, in a background thread,
        once the linearly scanned delta reaches `delta_limit`."""
        codes = np.asarray(codes, np.uint64).reshape(-1, 4)
        ids = np.asarray(ids, np.int64).reshape(-1)
        if len(codes) != len(ids):
            raise ValueError("one id per code")
        with self._lock:
            self._delta = (
                np.concatenate([self._delta[0], codes]),
                np.concatenate([self._delta[1], ids]),
            )
            if len(self._delta[1]) < self.delta_limit or self._rebuilder is not None:
                return
            self._rebuilder = threading.Thread(
                target=self._rebuild, name="pdq-index-rebuild", daemon=True
            )
            rebuilder = self._rebuilder
        if self.background:
            rebuilder.start()
        else:
            rebuilder.run()

    def join(self) -> None:
        """Wait for a rebuild in progress, if any."""
        rebuilder = self._rebuilder
        if rebuilder is not None and rebuilder.is_alive():
            rebuilder.join()

    def _rebuild(self) -> None:
        """Fold the delta into new tables; lookups go on with the old tables + delta meanwhile."""
        try:
            with self._lock:
                tables, (delta_codes, delta_ids) = self._tables, self._delta
                generation = self._generation
            merged = _build(
                np.concatenate([tables.codes, delta_codes]),
                np.concatenate([tables.ids, delta_ids]),
            )
            with self._lock:
                if generation == self._generation:
                    done = len(delta_ids)  # additions made during the rebuild stay in the delta
                    self._tables = merged
                    self._delta = (self._delta[0][done:], self._delta[1][done:])
        finally:
            with self._lock:
                self._rebuilder = None

    def search(self, queries: np.ndarray, max_distance: int) -> list[tuple[int, int]]:
        """(id, distance) of every entry within `max_distance` bits of any of the (Q, 4)
        queries (e.g. a photo's 8 dihedral hashes), nearest first; each id once."""
        if not 0 <= max_distance <= MAX_RADIUS:
            raise ValueError(f"max_distance must be within 0..{MAX_RADIUS}")
        queries = np.ascontiguousarray(queries, np.uint64).reshape(-1, 4)
        with self._lock:
            tables, (delta_codes, delta_ids) = self._tables, self._delta
        found_ids, found_d = [], []
        if len(tables.ids):
            rows, d = self._probe(tables, queries, max_distance)
            found_ids.append(tables.ids[rows])
            found_d.append(d)
        if len(delta_ids):  # (Q, M) distances by brute force
            d = np.bitwise_count(delta_codes[None, :, :] ^ queries[:, None, :]).sum(axis=2)
            best = d.min(axis=0)
            keep = best <= max_distance
            found_ids.append(delta_ids[keep])
            found_d.append(best[keep])
        if not found_ids:
            return []
        ids, dist = np.concatenate(found_ids), np.concatenate(found_d)
        order = np.lexsort((dist, ids))  # by id, nearest first → keep each id's first
        ids, dist = ids[order], dist[order]
        first = np.ones(len(ids), bool)
        first[1:] = ids[1:] != ids[:-1]
        ids, dist = ids[first], dist[first]
        nearest = np.argsort(dist, kind="stable")
        return [(int(i), int(x)) for i, x in zip(ids[nearest], dist[nearest], strict=True)]

    @staticmethod
    def _probe(
        tables: _Tables, queries: np.ndarray, max_distance: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of `tables` within `max_distance` of a query, with their distances."""
        owner, *masks = _probe_plan(len(queries), tables.key_bits)
        # Flips of a chunk's low (width - k) bits stay in its bucket: probe the buckets within
        # the radius of the query's bucket, each once, every chunk in one array.
        buckets = []
        keys = _chunk_keys(tables.key_bits)
        for chunk, (width, k) in enumerate(zip(CHUNK_WIDTHS, keys, strict=True)):
            own = chunk_values(queries, chunk) >> np.uint32(width - k)
            probes = (own[:, None] ^ masks[chunk]).ravel()  # (Q × P,)
            buckets.append(probes + np.uint32(tables.bases[chunk]))
        bucket = np.concatenate(buckets)
        positions, owner = _expand(tables.offsets[bucket], tables.offsets[bucket + 1], owner)
        row = tables.postings[positions]
        # Gather whole 32-byte rows (a void view copies each with one memcpy).
        codes = tables.codes.view("V32").ravel()[row].view(np.uint64).reshape(-1, 4)
        query = queries.view("V32").ravel()[owner].view(np.uint64).reshape(-1, 4)
        d = distances(codes, query)
        keep = d <= max_distance
        return row[keep], d[keep]
