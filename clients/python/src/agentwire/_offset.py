"""Offsets: the server mints them as 32 digits in two groups of 16 (`0…0_0…42`), so string
order is stream order. Only the arithmetic a read page needs is done here."""

from __future__ import annotations

_SPLIT = 10**16

START = "0000000000000000_0000000000000000"


def parse(offset: str) -> int:
    """The number of units before `offset`; ValueError for anything the server would not mint."""
    hi, sep, lo = offset.partition("_")
    if not sep or len(hi) != 16 or len(lo) != 16 or not (hi + lo).isdigit():
        raise ValueError(f"not an offset: {offset[:40]!r}")
    return int(hi) * _SPLIT + int(lo)


def format_offset(units: int) -> str:
    return f"{units // _SPLIT:016d}_{units % _SPLIT:016d}"


def advance(offset: str, units: int) -> str:
    """The offset `units` after `offset` (event i of a page read from `offset`)."""
    return format_offset(parse(offset) + units)
