"""The booking API's settings, from ``BOOKING_*`` environment variables (and ``.env``)."""

from __future__ import annotations

from functools import cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from settings import get_settings


class BookingSettings(BaseSettings):
    """Typed settings; secrets stay ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(env_prefix="BOOKING_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset = a SQLite file under DATA_DIR/booking/"
    )
    operator_token: SecretStr | None = Field(
        default=None, description="bearer token of operators for /api/v1/admin/..."
    )
    # Where ``python -m booking`` listens unless --host/--port say otherwise.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, gt=0, lt=65536)
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

    @field_validator("operator_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: object) -> object:
        """An empty token (an unset variable passed on as "") means no operators, not "" as a token."""
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value

    def url(self) -> str:
        """The store's URL, creating the default SQLite folder when needed."""
        if self.database_url:
            return self.database_url
        # Beside the rest of the platform's state (and the workers' shared rate-limit folder).
        database = get_settings().data_dir / "booking" / "booking.sqlite3"
        database.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{database}"


@cache
def get_booking_settings() -> BookingSettings:
    return BookingSettings()
