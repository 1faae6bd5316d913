"""Integer minor units as the exact decimal text the booking API renders, for whole columns.

Shared by the history import (the store's text columns) and the history generator (the
feed's amounts), so both write amounts exactly as the API would.
"""

from __future__ import annotations

import polars as pl


def minor_text(minor: pl.Expr, places: pl.Expr) -> pl.Expr:
    """Integer minor units as exact decimal text ("41235", "412.35"), as the API renders them
    (``format(Decimal, "f")``); ``places`` is 0 to 4."""
    text = minor.cast(pl.String)
    for digits in range(1, 5):
        unit = 10**digits
        text = (
            pl.when(places == digits)
            .then(
                (minor // unit).cast(pl.String)
                + "."
                + (minor % unit).cast(pl.String).str.zfill(digits)
            )
            .otherwise(text)
        )
    return text
