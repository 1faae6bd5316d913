"""The booking API's settings, from ``BOOKING_*`` environment variables (and ``.env``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE = Path("data") / "booking" / "booking.sqlite3"


class BookingSettings(BaseSettings):
    """Typed settings; secrets stay ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(env_prefix="BOOKING_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset = a SQLite file under data/"
    )
    operator_token: SecretStr | None = Field(
        default=None, description="bearer token of operators for /api/v1/admin/..."
    )
    # A saga's driver renews its lease every third of this; a crashed driver's saga is
    # resumed by the reconciler within about this long.
    saga_lease_seconds: float = Field(default=15.0, gt=0)
    reconcile_interval_seconds: float = Field(default=5.0, gt=0)
    # How long an unknown outcome may stay unresolved before Duffel's silence means "no order".
    reconcile_deadline_seconds: float = Field(default=180.0, ge=0)
    credential_cache_seconds: float = Field(default=60.0, ge=0)
    background_reconciler: bool = True
    # First retry of a failed webhook delivery after this; each next one waits twice as long.
    webhook_backoff_seconds: float = Field(default=2.0, gt=0)

    def url(self) -> str:
        """The store's URL, creating the default SQLite folder when needed."""
        if self.database_url:
            return self.database_url
        DEFAULT_DATABASE.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{DEFAULT_DATABASE}"


@cache
def get_booking_settings() -> BookingSettings:
    return BookingSettings()
