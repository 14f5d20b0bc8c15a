"""Hostile *bytes* for every decoder that sees outside input (Hypothesis strategies).

Not hostile values inside well-formed UTF-8 JSON (the older fuzz tests draw those), but what
a broken or malicious client puts on the wire: arbitrary bytes; a valid message with bytes
flipped, inserted or cut off; every string position filled with invalid UTF-8; overlong
encodings; lone surrogates, raw and as `\\ud800` escapes; byte-order marks; NUL.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Byte sequences that are not UTF-8 (or are UTF-8 only a lenient decoder would accept).
INVALID_UTF8 = [
    b"\xff\xfe\xfa",  # never valid in UTF-8
    b"\x80",  # a continuation byte alone
    b"\xc3",  # a lead byte cut short
    b"\xc0\xaf",  # overlong '/'
    b"\xe0\x80\xaf",  # overlong '/', three bytes
    b"\xf0\x80\x80\xaf",  # overlong '/', four bytes
    b"\xc0\x80",  # overlong NUL (modified UTF-8)
    b"\xed\xa0\x80",  # a lone high surrogate, raw
    b"\xed\xbf\xbf",  # a lone low surrogate, raw
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xfe\xff",  # a UTF-16 byte-order mark
]
# Valid JSON text, hostile to what reads it: escapes of lone surrogates, NUL, BOM inside.
HOSTILE_ESCAPES = [
    b"\\ud800",
    b"\\udfff",
    b"\\ud800\\u0041",
    b"\\u0000",
    b"\\ufeff",
    b"\\",  # an escape cut short
    b"\\x41",  # not a JSON escape
]
PREFIXES = [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00", b" \t\r\n"]


def _string_spans(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of the contents of every JSON string in `raw` (keys and values), for
    JSON that `json.dumps` wrote (no escaped quotes in our messages)."""
    spans, i = [], 0
    while (start := raw.find(b'"', i)) >= 0:
        end = raw.find(b'"', start + 1)
        if end < 0:
            break
        spans.append((start + 1, end))
        i = end + 1
    return spans


def _cells(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of every cell of a CSV text (what stands for a string there)."""
    spans, start = [], 0
    for i, byte in enumerate(raw):
        if byte in b",\n":
            spans.append((start, i))
            start = i + 1
    return spans or [(0, len(raw))]


@st.composite
def hostile_bytes(draw: Any, good: bytes) -> bytes:
    """One hostile body derived from `good` (a valid JSON message) or from nothing."""
    kind = draw(
        st.sampled_from(
            ["random", "flip", "insert", "truncate", "string", "escape", "prefix", "nul"]
        )
    )
    if kind == "random":
        return bytes(draw(st.binary(max_size=600)))
    data = bytearray(good)
    if kind == "flip":
        for at in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[at] ^= draw(st.integers(1, 255))
        return bytes(data)
    if kind == "insert":
        at = draw(st.integers(0, len(data)))
        piece = draw(st.sampled_from(INVALID_UTF8) | st.binary(min_size=1, max_size=8))
        return bytes(data[:at] + piece + data[at:])
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "prefix":
        return draw(st.sampled_from(PREFIXES)) + bytes(data)
    if kind == "nul":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at] + b"\x00" + data[at:])
    # Inside a string (key or value): invalid UTF-8, or a hostile escape.
    spans = _string_spans(bytes(data)) or _cells(bytes(data))
    start, end = draw(st.sampled_from(spans))
    pool = INVALID_UTF8 if kind == "string" else HOSTILE_ESCAPES
    piece = draw(st.sampled_from(pool))
    if draw(st.booleans()):  # the whole string
        return bytes(data[:start] + piece + data[end:])
    at = draw(st.integers(start, end))
    return bytes(data[:at] + piece + data[at:])


def every_string_filled(good: bytes) -> list[bytes]:
    """`good` with each string position (key and value) in turn replaced by each sequence
    of invalid UTF-8: the exhaustive part of the corpus."""
    out = []
    for start, end in _string_spans(good):
        for piece in INVALID_UTF8:
            out.append(good[:start] + piece + good[end:])
    return out


def message(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()
