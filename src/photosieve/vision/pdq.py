"""PDQ hashes of photos (Meta's 256-bit perceptual hash, the format of HMA and ThreatExchange).

A PDQ hash is 64 hex digits plus a quality in 0..100 (how much gradient the photo has: a flat
or nearly blank image hashes unreliably). Two photos are near-duplicates when their hashes
differ in at most 31 bits (HMA's default). `pdq_dihedral` gives the hashes of the photo's 8
rotations and mirrors, computed from one transform: querying with all 8 finds a banked photo
re-uploaded mirrored or turned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pdqhash
from PIL import Image

HEX_DIGITS = 64  # 256 bits
HEX_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class PdqHash:
    """A photo's PDQ hash (lower-case hex) and its quality (0..100)."""

    hex: str
    quality: int


def _bits_to_hex(bits: np.ndarray) -> str:
    """pdqhash's 256 0/1 values, most significant first, as 64 hex digits."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))  # (H, W, 3) uint8


def pdq(image: Image.Image) -> PdqHash:
    """The PDQ hash of a photo."""
    bits, quality = pdqhash.compute(_pixels(image))
    return PdqHash(_bits_to_hex(bits), int(quality))


def pdq_dihedral(image: Image.Image) -> list[PdqHash]:
    """The PDQ hashes of the photo and its 7 rotations/mirrors (the photo's own hash first)."""
    hashes, quality = pdqhash.compute_dihedral(_pixels(image))
    return [PdqHash(_bits_to_hex(bits), int(quality)) for bits in hashes]


def normalise_hex(text: str) -> str:
    """A PDQ hash as 64 lower-case hex digits; ValueError saying what is wrong otherwise."""
    value = text.strip().lower()
    if len(value) != HEX_DIGITS:
        raise ValueError(f"a PDQ hash has {HEX_DIGITS} hex digits, not {len(value)}")
    if not set(value) <= HEX_CHARS:
        raise ValueError("a PDQ hash has only hex digits 0-9 a-f")
    return value
