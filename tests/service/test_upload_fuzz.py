"""Fuzzing the upload endpoint: random and mutated image bytes and form fields, zero 5xx.

A seeded generator (reproducible, ~30 s on the shared 2-core box): real JPEG, PNG, GIF, WebP
and BMP files and the hostile set, mutated by truncation, bit flips, overwritten header fields,
garbage chunks and markers, spliced segments; plus random user ids, file names and content
types. Every response must be a 2xx or a 4xx with a JSON body. A failure prints the case's
index so it can be replayed alone (`FUZZ_ONLY=<index>`).
"""

from __future__ import annotations

import io
import os
import random
import struct
import time
import zlib
from collections.abc import Callable

import pytest
from PIL import Image

import hostile_files as hostile
from drawing import draw_photo, encode
from service_harness import APPROVE_ALL, Service

CASES = int(os.environ.get("FUZZ_CASES", "240"))
SEED = int(os.environ.get("FUZZ_SEED", "20261126"))


def _bases() -> list[bytes]:
    photo = draw_photo(11, (64, 48))
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    gif = io.BytesIO()
    frames = [photo.convert("P"), draw_photo(12, (64, 48)).convert("P")]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=20)
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        encode(photo, "JPEG", quality=80),
        encode(photo, "JPEG", quality=80, progressive=True, exif=exif),
        encode(photo, "PNG"),
        encode(rgba, "PNG"),
        encode(palette, "PNG", transparency=0),
        gif.getvalue(),
        encode(photo, "WEBP", quality=70),
        encode(photo, "BMP"),
        hostile.tiny_png_with([hostile.png_chunk(b"tEXt", b"k\x00v")]),
        hostile.iccp_bomb(2 * 1024 * 1024),
        hostile.header_only_png(5000, 5000),
        hostile.jpeg_header(3000, 2000),
        hostile.gif_header(400, 300),
    ]


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(0, len(data) + 1)]


def _flip_bits(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _overwrite_header(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    i = rng.randrange(min(len(out), 64))
    value = rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(32)])
    out[i : i + 4] = struct.pack(">I", value)
    return bytes(out)


def _garbage_chunk(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(min(len(data), 80) + 1)
    if data.startswith(hostile.PNG_SIGNATURE) and rng.random() < 0.6:
        kind = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyzIHDRPLTE") for _ in range(4))
        payload = rng.randbytes(rng.randrange(0, 300))
        if rng.random() < 0.3:
            payload = zlib.compress(payload * rng.randint(1, 2000))
        return data[:33] + hostile.png_chunk(kind, payload) + data[33:]
    if data.startswith(b"\xff\xd8") and rng.random() < 0.6:
        marker = bytes([0xFF, rng.randrange(0xC0, 0xFF)])
        body = rng.randbytes(rng.randrange(0, 200))
        return data[:2] + marker + struct.pack(">H", len(body) + 2) + body + data[2:]
    return data[:at] + rng.randbytes(rng.randrange(1, 64)) + data[at:]


def _splice(rng: random.Random, data: bytes) -> bytes:
    i, j = sorted(rng.randrange(len(data) + 1) for _ in range(2))
    return data[:j] + data[i:j] * rng.randint(1, 4) + data[j:]


def _random_bytes(rng: random.Random, data: bytes) -> bytes:
    prefix = data[: rng.randrange(0, 16)]
    return prefix + rng.randbytes(rng.randrange(0, 4096))


MUTATIONS: list[Callable[[random.Random, bytes], bytes]] = [
    _truncate,
    _flip_bits,
    _overwrite_header,
    _garbage_chunk,
    _splice,
    _random_bytes,
]


def _random_text(rng: random.Random) -> str:
    alphabet = "abcXYZ019 _-./\\'\"%<>{}\t\r\n\x00\x01\x7f\u00e9\u200b\u202e\U0001f600\ufffd"
    return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 5, 40, 129, 300])))


def _case(rng: random.Random, bases: list[bytes]) -> tuple[dict[str, object], dict[str, str]]:
    data = rng.choice(bases)
    for _ in range(rng.randint(1, 3)):
        data = rng.choice(MUTATIONS)(rng, data) if data else rng.randbytes(rng.randrange(64))
    name = rng.choice(["a.jpg", "x.png", "", "../../etc/passwd", _random_text(rng)])
    ctype = rng.choice(["image/jpeg", "image/png", "application/octet-stream", "text/html"])
    user = rng.choice(["u1", "user-42", _random_text(rng)])
    files: dict[str, object] = {"image": (name, data, ctype)}
    fields = {"user_id": user}
    roll = rng.random()
    if roll < 0.05:
        fields = {}
    elif roll < 0.1:
        fields["extra"] = _random_text(rng)
    return files, fields


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_fuzzed_uploads_never_get_a_5xx(service: Service) -> None:
    service.set_policy(APPROVE_ALL)
    api = service.api()
    bases = _bases()
    rng = random.Random(SEED)
    only = os.environ.get("FUZZ_ONLY")
    failures: list[str] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    for index in range(CASES):
        files, fields = _case(rng, bases)
        if only is not None and index != int(only):
            continue
        response = api.post("/v1/uploads", files=files, data=fields)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500 or "application/json" not in response.headers.get(
            "content-type", ""
        ):
            failures.append(f"case {index}: {response.status_code} {response.text[:200]}")
    elapsed = time.perf_counter() - started
    assert not failures, "\n".join(failures)
    assert elapsed < 120, f"{CASES} cases took {elapsed:.0f} s"
    if only is None:  # the corpus exercises both outcomes, not only rejections
        assert statuses.get(201, 0) > 5 and statuses.get(422, 0) > CASES // 3, statuses
