"""Write the files that mirror the tenant registry for dbt, so dbt never reads the YAML itself.

``loyalty_rates.csv`` holds each tenant's rate history (one open period from 2000-01-01 when
the tenant has none), ``tenants.csv`` one row of rules per tenant, and
``capability_declarations.csv`` what each tenant file declares about each capability (what
the APIs really offer is probed by ingestion, never taken from here). ``booking_statuses.csv``
lists the booking API's statuses (``booking.domain.Status``), the one definition the
warehouse's status columns are tested against. They are generated, so they live in the data
folder (``<data>/registry/``, the ``registry_seeds`` var for dbt, read by the ``stg_registry__*``
models), never in the source tree. Every dbt build writes them afresh
(``python -m warehouse.registry_seeds`` by hand): a new tenant YAML then reaches the
warehouse with no dbt change.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

from booking.domain import Status
from settings import get_settings
from tenants.registry import CAPABILITY_NAMES, RatePeriod, TenantConfig, load_registry

OPEN_PERIOD_START = dt.date(2000, 1, 1)
# Staging types rates as DECIMAL(18, 8) and the landing holds money as DECIMAL(18, 2): a
# value that would not fit is refused here rather than rounded silently by the cast.
RATE_PLACES = 8
MONEY_PLACES = 2

LOYALTY_RATES_COLUMNS = ("tenant_id", "currency", "usd_per_unit", "valid_from", "valid_to")
TENANTS_COLUMNS = (
    "tenant_id",
    "name",
    "currency",
    "usd_per_unit",
    "currency_decimals",
    "approval_threshold",
    "cashback_rate",
    "allowed_cabins",
    "has_ledger_feed",
    "has_member_list",
    "has_refunds",
)

DECLARATIONS_COLUMNS = ("tenant_id", "capability", "declared", "declared_as")
STATUS_COLUMNS = ("status",)


def _exact(value: Decimal, places: int, what: str) -> str:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -places:
        raise ValueError(f"{what} {value} needs more than {places} decimal places")
    return str(value)


def _check_decimals(tenant: TenantConfig) -> None:
    if tenant.currency.decimals > MONEY_PLACES:
        raise ValueError(
            f"{tenant.id}: {tenant.currency.decimals} decimals do not fit DECIMAL(18, 2) money"
        )


def loyalty_rate_rows(registry: dict[str, TenantConfig]) -> list[dict[str, str]]:
    """One row per tenant and rate period [valid_from, valid_to); an empty valid_to is open."""
    rows = []
    for tenant in registry.values():
        _check_decimals(tenant)
        currency = tenant.currency
        periods = currency.rate_history or (
            RatePeriod(usd_per_unit=currency.usd_per_unit, valid_from=OPEN_PERIOD_START),
        )
        rows.extend(
            {
                "tenant_id": tenant.id,
                "currency": currency.code,
                "usd_per_unit": _exact(period.usd_per_unit, RATE_PLACES, f"{tenant.id} rate"),
                "valid_from": period.valid_from.isoformat(),
                "valid_to": period.valid_to.isoformat() if period.valid_to else "",
            }
            for period in periods
        )
    return rows


def tenant_rows(registry: dict[str, TenantConfig]) -> list[dict[str, str]]:
    """One row per tenant: its currency and the business rules the warehouse applies."""
    rows = []
    for tenant in registry.values():
        _check_decimals(tenant)
        rules, capabilities = tenant.rules, tenant.capabilities
        rows.append(
            {
                "tenant_id": tenant.id,
                "name": tenant.name,
                "currency": tenant.currency.code,
                "usd_per_unit": _exact(
                    tenant.currency.usd_per_unit, RATE_PLACES, f"{tenant.id} rate"
                ),
                "currency_decimals": str(tenant.currency.decimals),
                "approval_threshold": (
                    "" if rules.approval_threshold is None else str(rules.approval_threshold)
                ),
                "cashback_rate": _exact(rules.cashback_rate, RATE_PLACES, f"{tenant.id} cashback"),
                "allowed_cabins": ",".join(rules.allowed_cabins),
                # Declared in the file (offered or to probe), not found: see
                # capability_declarations and the tenant_capabilities mart.
                "has_ledger_feed": _declared(capabilities.declared("ledger_feed")),
                "has_member_list": _declared(capabilities.declared("member_list")),
                "has_refunds": _declared(capabilities.declared("refunds")),
            }
        )
    return rows


def _declared(how: object) -> str:
    return str(how is not None).lower()


def declaration_rows(registry: dict[str, TenantConfig]) -> list[dict[str, str]]:
    """One row per tenant and capability: declared or not, and how (``true`` or ``probe``)."""
    rows = []
    for tenant in registry.values():
        for capability in CAPABILITY_NAMES:
            how = tenant.capabilities.declared(capability)
            rows.append(
                {
                    "tenant_id": tenant.id,
                    "capability": capability,
                    "declared": _declared(how),
                    "declared_as": "" if how is None else str(how).lower(),
                }
            )
    return rows


def render_csv(columns: tuple[str, ...], rows: list[dict[str, str]]) -> str:
    """CSV text with a header and Unix line endings, byte-stable for the same rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def seed_files(registry: dict[str, TenantConfig]) -> dict[str, str]:
    """File name -> CSV text of every seed derived from the registry."""
    return {
        "loyalty_rates.csv": render_csv(LOYALTY_RATES_COLUMNS, loyalty_rate_rows(registry)),
        "tenants.csv": render_csv(TENANTS_COLUMNS, tenant_rows(registry)),
        "capability_declarations.csv": render_csv(DECLARATIONS_COLUMNS, declaration_rows(registry)),
        "booking_statuses.csv": render_csv(STATUS_COLUMNS, [{"status": s.value} for s in Status]),
    }


def seeds_dir(data_dir: Path) -> Path:
    """Where the registry seeds of the data folder ``data_dir`` are written."""
    return data_dir / "registry"


def write_seeds(seeds_dir: Path, registry: dict[str, TenantConfig] | None = None) -> list[Path]:
    """Write the registry seeds atomically (temp file + rename); returns the paths written.

    Without ``registry``, the deployment's registry is read afresh (``TENANTS_DIR`` when
    set), so a new tenant file reaches the next build without a restart.
    """
    seeds_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in seed_files(registry or load_registry(get_settings().tenants_dir)).items():
        target = seeds_dir / name
        tmp = target.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        written.append(target)
    return written


if __name__ == "__main__":
    for path in write_seeds(seeds_dir(get_settings().data_dir).resolve()):
        print(path)
