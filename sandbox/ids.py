"""Identifier formats of the stand-ins, made deterministic from integers.

Ids come from a bijective scramble of a counter, so they look random, never collide,
and the same seed and counter give the same id on every run.
"""

from __future__ import annotations

import numpy as np

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


def ascii_rows(*parts: np.ndarray | str, n: int) -> np.ndarray:
    """Fixed-width ASCII strings (numpy ``U``) from literal prefixes and code matrices."""
    columns = [
        np.broadcast_to(np.frombuffer(p.encode(), dtype=np.uint8), (n, len(p)))
        if isinstance(p, str)
        else p
        for p in parts
    ]
    matrix = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype=np.uint8)
    width = matrix.shape[1]
    return matrix.view(f"S{width}").ravel().astype(f"U{width}")


def hex_ids(prefix: str, counter: np.ndarray, salt: int) -> list[str]:
    """``prefix`` + 12 lower-case hex digits, e.g. ``txn_0a1b2c3d4e5f``."""
    counter = np.asarray(counter)
    if not counter.size:
        return []
    return ascii_rows(prefix, hex_matrix(scramble(counter, salt)), n=counter.size).tolist()


def duffel_ids(prefix: str, counter: np.ndarray, salt: int) -> list[str]:
    """Duffel-style ids: ``ord_0000`` + 22 base62 characters."""
    values = scramble(counter, salt)
    alphabet = np.frombuffer(BASE62.encode(), dtype="S1")
    digits = []
    for _ in range(9):
        digits.append(alphabet[(values % np.uint64(62)).astype(np.int64)])
        values = values // np.uint64(62)
    body = np.char.add(digits[0], digits[1])
    for column in digits[2:]:
        body = np.char.add(body, column)
    salt_chars, rest = [], salt & _MASK48
    for _ in range(13):
        rest, digit = divmod(rest * 31 + 7, 62)
        salt_chars.append(BASE62[digit])
    pad = prefix + "0000" + "".join(salt_chars)
    return [pad + text.decode() for text in body.tolist()]


def pnrs(counter: np.ndarray, salt: int) -> list[str]:
    """Six-character booking references (PNRs) of upper-case letters and digits."""
    alphabet = np.frombuffer(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", dtype="S1")
    values = scramble(counter, salt)
    body = alphabet[(values % np.uint64(32)).astype(np.int64)]
    for _ in range(5):
        values = values // np.uint64(32)
        body = np.char.add(body, alphabet[(values % np.uint64(32)).astype(np.int64)])
    return [text.decode() for text in body.tolist()]
