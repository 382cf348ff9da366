"""Perceptual hashes of photos and the known-bad check (Meta HMA's hasher and matcher).

Every upload gets two hashes of its decoded (size-reduced) photo: the 256-bit PDQ hash, the
format of HMA and ThreatExchange hash lists, and the older 64-bit DCT pHash. Both survive
re-encoding, resizing and small edits. The PDQ check runs first, through the bank's index, with
the photo's 8 rotations/mirrors (a re-upload turned or mirrored still matches), within
`pdq_match_distance` bits (31, HMA's default); a photo whose PDQ quality is below
`pdq_min_quality` (50: flat, nearly blank images hash unreliably) is neither banked nor looked up
by PDQ. The pHash check covers the entries without a PDQ hash (banked before PDQ, or of such
low-quality photos).
"""

from __future__ import annotations

import imagehash
from PIL import Image
from sqlalchemy.orm import Session

from photosieve.store import bank
from photosieve.store.bank import BankMatch
from photosieve.store.pdq_bank import PdqBank
from photosieve.vision.pdq import PdqHash, pdq_dihedral


def phash(image: Image.Image) -> str:
    """The 64-bit perceptual hash of an RGB photo as 16 hex digits."""
    return str(imagehash.phash(image, hash_size=8))


def pdq_variants(image: Image.Image) -> list[PdqHash]:
    """The PDQ hashes of the photo and its 7 rotations/mirrors (its own first)."""
    return pdq_dihedral(image)


def match(
    session: Session,
    image_hash: str,
    max_distance: int,
    *,
    pdq_bank: PdqBank | None = None,
    variants: list[PdqHash] | None = None,
    pdq_distance: int,
    min_quality: int,
) -> BankMatch | None:
    """The best known-bad match of a photo, or None: by PDQ (any of its `variants` within
    `pdq_distance` bits, when their quality is at least `min_quality`), else by pHash (within
    `max_distance` bits of an entry without a PDQ hash)."""
    if pdq_bank is not None and variants and variants[0].quality >= min_quality:
        hit = pdq_bank.nearest(session, [v.hex for v in variants], pdq_distance)
        if hit is not None:
            return hit
    return bank.nearest(session, image_hash, max_distance)
