"""Hostile image files, built in memory: chunk bombs, thin and huge headers, big-but-cheap PNGs.

Shared by the decoder tests, the service tests, the fuzz test and `bench/hostile_inputs.py`.
Headers are written by hand where Pillow would refuse (or take seconds) to write the file.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_ihdr(width: int, height: int, *, bit_depth: int = 8, colour: int = 2) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0))


def tiny_png_with(chunks: list[bytes]) -> bytes:
    """A valid 8×8 RGB PNG with `chunks` inserted between IHDR and IDAT."""
    raw = b"".join(b"\x00" + b"\x80" * 24 for _ in range(8))
    return (
        PNG_SIGNATURE
        + png_ihdr(8, 8)
        + b"".join(chunks)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def iccp_bomb(inflated: int = 4 * 1024 * 1024) -> bytes:
    """An iCCP profile that inflates to `inflated` bytes (Pillow allows 1 MB)."""
    payload = b"icc\x00\x00" + zlib.compress(b"\x00" * inflated, 9)
    return tiny_png_with([png_chunk(b"iCCP", payload)])


def ztxt_bomb(inflated: int = 4 * 1024 * 1024) -> bytes:
    """One zTXt chunk that inflates to `inflated` bytes."""
    payload = b"Comment\x00\x00" + zlib.compress(b"A" * inflated, 9)
    return tiny_png_with([png_chunk(b"zTXt", payload)])


def many_ztxt(count: int = 80, each: int = 1_000_000) -> bytes:
    """`count` zTXt chunks of `each` bytes inflated (over Pillow's 64 MB text budget)."""
    chunk = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"B" * each, 9))
    return tiny_png_with([chunk] * count)


def many_small_chunks(count: int = 20_000) -> bytes:
    """Thousands of tiny ancillary chunks (tEXt) before the image data."""
    chunk = png_chunk(b"tEXt", b"k\x00v")
    return tiny_png_with([chunk] * count)


def header_only_png(width: int, height: int, *, colour: int = 0, bit_depth: int = 1) -> bytes:
    """A PNG whose header declares `width`×`height` followed by a few rows of real data.

    Enough for a decoder to start (and to be judged from its header); a 1×39,999,999 image this
    way is a few hundred bytes instead of the 76 KB a full file takes.
    """
    rows = b"".join(b"\x00\x00" for _ in range(64))
    return (
        PNG_SIGNATURE
        + png_ihdr(width, height, bit_depth=bit_depth, colour=colour)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def solid_png(width: int, height: int, mode: str = "RGB") -> bytes:
    """A big-but-cheap PNG: one colour, compresses to a few hundred kB."""
    colour: int | tuple[int, ...] = {"RGB": (10, 200, 30), "RGBA": (10, 200, 30, 128)}.get(mode, 3)
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def gif_header(width: int, height: int) -> bytes:
    """A GIF whose logical screen and first frame declare `width`×`height`."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00" * 6
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def jpeg_header(width: int, height: int) -> bytes:
    """The start of a baseline JPEG whose SOF0 declares `width`×`height` (no scan data)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (50, 60, 70)).save(buffer, "JPEG")
    data = buffer.getvalue()
    sof = data.index(b"\xff\xc0")
    patched = data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]
    return patched


def animated_gif(frames: int = 300, size: tuple[int, int] = (64, 64)) -> bytes:
    """An animated GIF with many frames (only the first is decoded)."""
    images = [Image.new("P", size, i % 256) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=10, loop=0)
    return buffer.getvalue()


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: max(1, int(len(data) * keep))]


def thin_png(height: int = 39_999_999) -> bytes:
    """A complete 1-bit 1×`height` PNG (76 KB for 39,999,999 rows): under 40 MP, yet hostile."""
    compressor = zlib.compressobj(9)
    rows = b"\x00\x00" * 1_000_000  # filter byte + one byte of 1-bit pixels, per row
    body = b""
    left = height
    while left > 0:
        take = min(left, 1_000_000)
        body += compressor.compress(rows[: 2 * take])
        left -= take
    body += compressor.flush()
    return (
        PNG_SIGNATURE
        + png_ihdr(1, height, bit_depth=1, colour=0)
        + png_chunk(b"IDAT", body)
        + png_chunk(b"IEND", b"")
    )


def bmp_rle8(width: int, height: int) -> bytes:
    """An RLE8-compressed BMP of one colour: `width`×`height` pixels in a few hundred kB."""
    row = bytes([255, 7]) * (width // 255) + bytes([width % 255, 7]) + b"\x00\x00"
    data = row * height + b"\x00\x01"
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    head = b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset)
    return head + info + palette + data


def solid(width: int, height: int, fmt: str, **kwargs: object) -> bytes:
    """A one-colour image of any size in `fmt` (big on screen, small on the wire)."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 90, 60)).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def jpeg_with_segments(count: int) -> bytes:
    """A small JPEG with `count` empty COM segments before its header."""
    data = solid(64, 64, "JPEG")
    return data[:2] + b"\xff\xfe\x00\x02" * count + data[2:]


def jpeg_with_stray_bytes(count: int) -> bytes:
    """A small JPEG with `count` junk bytes where a marker should be."""
    data = solid(64, 64, "JPEG")
    return data[:2] + b"\x00" * count + data[2:]


def gif_with_extensions(count: int) -> bytes:
    """A GIF with `count` tiny comment extensions before its first frame."""
    data = gif_header(300, 300)
    return data[:19] + b"\x21\xfe\x01a\x00" * count + data[19:]


def gif_with_stray_bytes(count: int) -> bytes:
    """A GIF with `count` junk bytes between its blocks (Pillow skips them one by one)."""
    data = gif_header(300, 300)
    return data[:19] + b"\x01" * count + data[19:]
