"""Perceptual hashes of photos and the known-bad check (Meta HMA's hasher and matcher).

A 64-bit DCT pHash survives re-encoding, resizing and small edits, so a removed photo uploaded
again (even recompressed) lands within a few bits of its bank entry.
"""

from __future__ import annotations

import imagehash
from PIL import Image
from sqlalchemy.orm import Session

from photosieve.store import bank
from photosieve.store.bank import BankMatch


def phash(image: Image.Image) -> str:
    """The 64-bit perceptual hash of an RGB photo as 16 hex digits."""
    return str(imagehash.phash(image, hash_size=8))


def match(session: Session, image_hash: str, max_distance: int) -> BankMatch | None:
    """The nearest known-bad photo within `max_distance` bits, or None."""
    return bank.nearest(session, image_hash, max_distance)
