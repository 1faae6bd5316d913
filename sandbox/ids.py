"""Identifier formats of the stand-ins, made deterministic from integers.

Ids come from a bijective scramble of a counter, so they look random, never collide,
and the same seed and counter give the same id on every run.
"""

from __future__ import annotations

import numpy as np
import polars as pl

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_MASK48 = (1 << 48) - 1
_MULT = 0x9E3779B97F4A7C15 & _MASK48 | 1  # odd, so multiplication mod 2**48 is a bijection


def scramble(counter: np.ndarray, salt: int) -> np.ndarray:
    """A bijection of 48-bit integers: distinct counters give distinct values."""
    # multiply by an odd constant, add, xor-shift: each step is invertible mod 2**48
    mask = np.uint64(_MASK48)
    x = (counter.astype(np.uint64) * np.uint64(_MULT)) & mask
    x = (x + np.uint64((salt * 0x5851F42D4C95) & _MASK48)) & mask
    x ^= x >> np.uint64(21)
    x = (x * np.uint64(_MULT)) & mask
    x ^= x >> np.uint64(17)
    return x


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLES = np.arange(44, -1, -4, dtype=np.uint64)


def hex_matrix(values: np.ndarray, digits: int = 12) -> np.ndarray:
    """The last ``digits`` hex digits of each 48-bit value, one row of ASCII codes per value."""
    nibbles = (values[:, None] >> _NIBBLES[12 - digits :]) & np.uint64(0xF)
    return _HEX[nibbles.astype(np.intp)]


def ascii_bytes(*parts: np.ndarray | str, n: int) -> np.ndarray:
    """Fixed-width ASCII strings (numpy ``S``) from literal prefixes and code matrices."""
    columns = [
        np.broadcast_to(np.frombuffer(p.encode(), dtype=np.uint8), (n, len(p)))
        if isinstance(p, str)
        else p
        for p in parts
    ]
    matrix = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype=np.uint8)
    return matrix.view(f"S{matrix.shape[1]}").ravel()


def ascii_rows(*parts: np.ndarray | str, n: int) -> np.ndarray:
    """Fixed-width ASCII strings (numpy ``U``) from literal prefixes and code matrices."""
    rows = ascii_bytes(*parts, n=n)
    return rows.astype(f"U{rows.dtype.itemsize}")


def as_series(rows: np.ndarray) -> pl.Series:
    """``S`` strings as a polars String series, without a Python string each."""
    return pl.Series(rows).cast(pl.String)


def hex_ids(prefix: str, counter: np.ndarray, salt: int) -> list[str]:
    """``prefix`` + 12 lower-case hex digits, e.g. ``txn_0a1b2c3d4e5f``."""
    counter = np.asarray(counter)
    if not counter.size:
        return []
    return ascii_rows(prefix, hex_matrix(scramble(counter, salt)), n=counter.size).tolist()


def hex_series(prefix: str, counter: np.ndarray, salt: int) -> pl.Series:
    """``hex_ids`` as a polars series."""
    return as_series(ascii_bytes(prefix, hex_matrix(scramble(counter, salt)), n=counter.size))


_BASE62 = np.frombuffer(BASE62.encode(), dtype=np.uint8)


def _duffel_rows(prefix: str, counter: np.ndarray, salt: int) -> np.ndarray:
    values = scramble(counter, salt)
    digits = np.empty((values.shape[0], 9), dtype=np.uint8)
    for k in range(9):
        digits[:, k] = _BASE62[(values % np.uint64(62)).astype(np.intp)]
        values = values // np.uint64(62)
    salt_chars, rest = [], salt & _MASK48
    for _ in range(13):
        rest, digit = divmod(rest * 31 + 7, 62)
        salt_chars.append(BASE62[digit])
    pad = prefix + "0000" + "".join(salt_chars)
    return ascii_bytes(pad, digits, n=values.shape[0])


def duffel_ids(prefix: str, counter: np.ndarray, salt: int) -> list[str]:
    """Duffel-style ids: ``ord_0000`` + 22 base62 characters."""
    rows = _duffel_rows(prefix, np.asarray(counter), salt)
    return rows.astype(f"U{rows.dtype.itemsize}").tolist()


def duffel_series(prefix: str, counter: np.ndarray, salt: int) -> pl.Series:
    """``duffel_ids`` as a polars series."""
    return as_series(_duffel_rows(prefix, np.asarray(counter), salt))


def pnrs(counter: np.ndarray, salt: int) -> list[str]:
    """Six-character booking references (PNRs) of upper-case letters and digits."""
    alphabet = np.frombuffer(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", dtype="S1")
    values = scramble(counter, salt)
    body = alphabet[(values % np.uint64(32)).astype(np.int64)]
    for _ in range(5):
        values = values // np.uint64(32)
        body = np.char.add(body, alphabet[(values % np.uint64(32)).astype(np.int64)])
    return [text.decode() for text in body.tolist()]
