"""A bounded walk over a file's container structure before Pillow parses it.

Pillow parses PNG chunks, JPEG marker segments and GIF blocks in Python, one at a time, so a
file of tiny pieces costs time per byte: a 9 MB PNG of 600,000 empty tEXt chunks took 5.3 s to
open, a 10 MB JPEG of 2.5 million empty COM segments 11 s, both under the 10 MB upload limit.
`structure_problem` walks the same structure with a hard cap on the number of pieces (stopping
as soon as a cap is passed, so its own cost is bounded) and names what is wrong with a file
real encoders never write (`vision.decode` refuses it as `too_many_chunks`). Caps (generous for
real files):

- PNG: ≤ 16,384 chunks in all (10 MB of 1 KB IDAT chunks is 10,240), ≤ 1,024 that are not
  IDAT (an APNG's two per frame: ~500 frames), ≤ 16 compressed text/profile chunks
  (zTXt, iTXt, iCCP; each may inflate to 1 MB in Pillow);
- JPEG: ≤ 256 marker segments before the first scan (real files: 10-30), ≤ 1,024 stray bytes
  between markers, ≤ 100 scans (`SOS`; progressive files have ~10; each scan is a pass over
  the whole coefficient buffer in libjpeg);
- GIF: ≤ 4,096 extension sub-blocks and ≤ 1,024 stray bytes before the first frame.

Anything the walk cannot follow is left to Pillow, which reports it as corrupt.
"""

from __future__ import annotations

import struct

PNG_MAX_CHUNKS = 16_384
PNG_MAX_OTHER_CHUNKS = 1_024
PNG_MAX_COMPRESSED_TEXT = 16
JPEG_MAX_SEGMENTS = 256
JPEG_MAX_STRAY_BYTES = 1_024
JPEG_MAX_SCANS = 100
GIF_MAX_SUBBLOCKS = 4_096
GIF_MAX_STRAY_BYTES = 1_024

_PNG = b"\x89PNG\r\n\x1a\n"
_COMPRESSED_TEXT = frozenset({b"zTXt", b"iTXt", b"iCCP"})
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xDA)})  # TEM, RSTn, SOI, EOI


class _Hostile(Exception):
    pass


def _refuse(what: str) -> _Hostile:
    return _Hostile(what)


def structure_problem(data: bytes) -> str | None:
    """What makes a PNG, JPEG or GIF hostile (too many small pieces), or None."""
    try:
        if data.startswith(_PNG):
            _check_png(data)
        elif data.startswith(b"\xff\xd8"):
            _check_jpeg(data)
        elif data.startswith((b"GIF87a", b"GIF89a")):
            _check_gif(data)
    except _Hostile as exc:
        return str(exc)
    return None


def _check_png(data: bytes) -> None:
    position, chunks, other, compressed = 8, 0, 0, 0
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        chunks += 1
        if kind != b"IDAT":
            other += 1
        if kind in _COMPRESSED_TEXT:
            compressed += 1
        if chunks > PNG_MAX_CHUNKS:
            raise _refuse(f"more than {PNG_MAX_CHUNKS} PNG chunks")
        if other > PNG_MAX_OTHER_CHUNKS:
            raise _refuse(f"more than {PNG_MAX_OTHER_CHUNKS} PNG chunks other than image data")
        if compressed > PNG_MAX_COMPRESSED_TEXT:
            raise _refuse(f"more than {PNG_MAX_COMPRESSED_TEXT} compressed text/profile chunks")
        if kind == b"IEND":
            return
        position += 12 + length


def _check_jpeg(data: bytes) -> None:
    position, segments, stray = 2, 0, 0
    while position + 1 < len(data):
        if data[position] != 0xFF:
            stray += 1  # Pillow skips these one byte at a time
            if stray > JPEG_MAX_STRAY_BYTES:
                raise _refuse(f"more than {JPEG_MAX_STRAY_BYTES} stray bytes between markers")
            position += 1
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            stray += 1
            if stray > JPEG_MAX_STRAY_BYTES:
                raise _refuse(f"more than {JPEG_MAX_STRAY_BYTES} fill bytes between markers")
            position += 1
            continue
        segments += 1
        if segments > JPEG_MAX_SEGMENTS:
            raise _refuse(f"more than {JPEG_MAX_SEGMENTS} JPEG segments before the image data")
        if marker == 0xDA:  # start of scan: the header is over
            break
        if marker in _NO_LENGTH or position + 4 > len(data):
            position += 2
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        position += 2 + max(length, 2)
    # Inside entropy-coded data 0xFF is stuffed as FF 00, so FF DA only ever starts a scan.
    if data.count(b"\xff\xda") > JPEG_MAX_SCANS:
        raise _refuse(f"more than {JPEG_MAX_SCANS} JPEG scans")


def _check_gif(data: bytes) -> None:
    if len(data) < 13:
        return
    flags = data[10]
    position = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    subblocks = stray = 0
    while position < len(data):
        tag = data[position]
        if tag in (0x2C, 0x3B):  # the first frame, or the trailer
            return
        position += 1
        if tag != 0x21:
            stray += 1  # Pillow skips unknown bytes one at a time
            if stray > GIF_MAX_STRAY_BYTES:
                raise _refuse(f"more than {GIF_MAX_STRAY_BYTES} stray bytes between GIF blocks")
            continue
        position += 1  # the extension's label
        while position < len(data):
            size = data[position]
            position += 1 + size
            subblocks += 1
            if subblocks > GIF_MAX_SUBBLOCKS:
                raise _refuse(f"more than {GIF_MAX_SUBBLOCKS} GIF extension blocks")
            if size == 0:
                break
