"""Where landed and quarantined files live: a local folder, or an S3-compatible object store.

One path-like API for both: a local root is a plain ``pathlib.Path`` (polars reads and writes
it directly, as it always did); an object-store root (``s3://bucket/prefix``) is a ``UPath``
over fsspec's ``s3fs``, whose files are listed and opened through that filesystem, read into
memory for polars, and written as one upload of a finished object. An S3 PUT is atomic (the
object appears whole under its name, or not at all), so no reader ever sees half a file.

dbt reads the same store through the same fsspec filesystem (``dbt_project/profiles.yml``,
``filesystems``), configured from ``store_env``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl
from upath import UPath

from settings import Settings

# A local folder or file, or an object in the store (both answer the pathlib API).
Location = Path | UPath

OBJECT_STORE_SCHEMES = ("s3://",)


def location(uri: str | Path, settings: Settings) -> Location:
    """The folder a setting names: a local path, or an ``s3://`` URI on the configured store."""
    text = str(uri)
    if "://" not in text:
        return Path(text)
    if not text.startswith(OBJECT_STORE_SCHEMES):
        raise ValueError(f"landing location {text!r}: a local path or s3://bucket/prefix")
    return UPath(text, **storage_options(settings))


def storage_options(settings: Settings) -> dict[str, Any]:
    """s3fs's options from the settings; unset keys leave the AWS default chain to find them."""
    # Other processes land files too: list the store afresh every time, never from a cache.
    options: dict[str, Any] = {"use_listings_cache": False}
    if settings.landing_s3_endpoint_url:
        options["endpoint_url"] = settings.landing_s3_endpoint_url
    if settings.landing_s3_region:
        options["client_kwargs"] = {"region_name": settings.landing_s3_region}
    if settings.landing_s3_access_key_id:
        options["key"] = settings.landing_s3_access_key_id
    if settings.landing_s3_secret_access_key:
        options["secret"] = settings.landing_s3_secret_access_key.get_secret_value()
    return options


def store_env(settings: Settings) -> dict[str, str]:
    """What dbt's fsspec filesystem reads from the environment to reach the same store.

    The keys go in the AWS SDK's own variables, so the profile never holds (or logs) them.
    """
    values = {
        "LANDING_S3_ENDPOINT_URL": settings.landing_s3_endpoint_url,
        "LANDING_S3_REGION": settings.landing_s3_region,
        "AWS_ACCESS_KEY_ID": settings.landing_s3_access_key_id,
        "AWS_SECRET_ACCESS_KEY": settings.landing_s3_secret_access_key
        and settings.landing_s3_secret_access_key.get_secret_value(),
    }
    return {name: value for name, value in values.items() if value}


def is_local(path: Location) -> bool:
    return isinstance(path, Path)


def parquet_source(path: Location) -> Path | bytes:
    """What polars reads a landed file from: the local path, or the object's bytes."""
    return path if is_local(path) else path.read_bytes()


def footer(path: Location) -> dict[str, str]:
    """A Parquet file's key-value metadata (the cursors and merge lists landing writes)."""
    if is_local(path):
        return pl.read_parquet_metadata(path)
    with path.open("rb") as handle:
        return pl.read_parquet_metadata(handle)


def write_parquet(frame: pl.DataFrame, path: Location, metadata: dict[str, str] | None) -> None:
    """Write ``frame`` as Parquet at ``path``; on a store, as one upload of the whole file."""
    if is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path, compression="zstd", statistics=True, metadata=metadata)
        return
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True, metadata=metadata)
    path.fs.pipe_file(path.path, buffer.getvalue())
