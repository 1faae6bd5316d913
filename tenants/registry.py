"""The tenant registry: one YAML file per tenant, validated into typed configuration.

Adding a tenant means adding one ``<tenant_id>.yaml`` beside this module (or in the
folder named by ``TENANTS_DIR``). A file holds the NAMES of the environment variables
that carry secrets, never a secret itself.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REGISTRY_DIR = Path(__file__).resolve().parent
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
Cabin = Literal["economy", "premium_economy", "business", "first"]


class RegistryError(ValueError):
    """A tenant file that cannot be loaded; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_name(value: str) -> str:
    if not ENV_NAME.match(value):
        # Never echo the value: a secret pasted here by mistake must not reach a log.
        raise ValueError(
            "must be the NAME of an environment variable (A-Z, 0-9, _), not a value; "
            "if a secret was pasted here, remove it from the file and rotate it"
        )
    return value


EnvName = Annotated[str, Field(description="name of an environment variable")]


class RatePeriod(_Strict):
    """The USD value of one loyalty unit during [valid_from, valid_to)."""

    usd_per_unit: Decimal = Field(gt=0)
    valid_from: dt.date
    valid_to: dt.date | None = None


class Currency(_Strict):
    code: str = Field(pattern=r"^[a-z]+$", description="loyalty currency name, e.g. stars")
    usd_per_unit: Decimal = Field(gt=0, description="USD value of one unit today, exact")
    decimals: int = Field(ge=0, le=4, description="decimal places an amount may carry")
    rate_history: tuple[RatePeriod, ...] = ()

    @field_validator("usd_per_unit", mode="before")
    @classmethod
    def _exact_text(cls, value: object) -> object:
        # A YAML float would already have lost exactness; insist on a quoted decimal.
        if isinstance(value, float):
            raise ValueError("write the rate as a quoted decimal string, e.g. '0.01'")
        return value

    @model_validator(mode="after")
    def _history_is_contiguous(self) -> Currency:
        periods = self.rate_history
        if not periods:
            return self
        for earlier, later in itertools.pairwise(periods):
            if earlier.valid_to != later.valid_from:
                raise ValueError(
                    f"rate_history: period from {earlier.valid_from} must end where the next "
                    f"begins ({later.valid_from})"
                )
        if periods[-1].valid_to is not None or periods[-1].usd_per_unit != self.usd_per_unit:
            raise ValueError("rate_history: the last period must be open and equal usd_per_unit")
        return self

    def usd_per_unit_on(self, day: dt.date) -> Decimal:
        """The rate in force on ``day`` (the current rate when there is no history)."""
        for period in self.rate_history:
            if period.valid_from <= day and (period.valid_to is None or day < period.valid_to):
                return period.usd_per_unit
        return self.usd_per_unit


class BusinessRules(_Strict):
    approval_threshold: int | None = Field(
        default=None, ge=1, description="bookings above this many units need manual approval"
    )
    allowed_cabins: tuple[Cabin, ...] = ("economy", "premium_economy", "business", "first")
    cashback_rate: Decimal = Field(default=Decimal("0"), ge=0, lt=1)


class RateLimit(_Strict):
    requests: int = Field(gt=0, description="requests allowed per window")
    window_seconds: float = Field(default=60.0, gt=0)


class ApiKeyConfig(_Strict):
    kind: Literal["api_key"]
    header: str = Field(min_length=1)
    key_env: EnvName

    _check = field_validator("key_env")(_env_name)


class OAuthClientCredentialsConfig(_Strict):
    kind: Literal["oauth2_client_credentials"]
    token_path: str = Field(pattern=r"^/")
    client_id_env: EnvName
    client_secret_env: EnvName
    scope: str | None = None

    _check = field_validator("client_id_env", "client_secret_env")(_env_name)


class JwtSessionConfig(_Strict):
    kind: Literal["jwt_session"]
    session_path: str = Field(pattern=r"^/")
    partner_id_env: EnvName
    partner_secret_env: EnvName
    device_id: str = Field(default="analytics-platform", min_length=1)

    _check = field_validator("partner_id_env", "partner_secret_env")(_env_name)


Auth = Annotated[
    ApiKeyConfig | OAuthClientCredentialsConfig | JwtSessionConfig, Field(discriminator="kind")
]


# How a capability is declared: ``true``, the tenant's API has it (a 404 there is an error);
# ``probe``, the reference API lacks it but a service may add it (ours do): ingestion asks,
# and a 404 is recorded as "not offered" instead of failing the run.
Offered = Literal[True, "probe"]
CAPABILITY_NAMES = ("ledger_feed", "member_list", "refunds", "partner_session")


class Endpoint(_Strict):
    path: str = Field(pattern=r"^/")
    page_size: int = Field(default=1000, ge=1, le=1000)
    offered: Offered = True


class Capabilities(_Strict):
    """Extensions beyond the reference API; a tenant without one must still work.

    Absent (or ``false``) means not offered and never asked for; ``probe`` means ask, and
    take the answer as the fact (see ``Offered``).
    """

    ledger_feed: Endpoint | None = None
    member_list: Endpoint | None = None
    refunds: bool | Literal["probe"] = False
    # FintechApp-style session auth: a partner principal's session for the tenant-wide
    # endpoints (ledger feed, member list). Only meaningful with ``auth.kind: jwt_session``.
    partner_session: bool | Literal["probe"] = False

    def declared(self, capability: str) -> Offered | None:
        """How ``capability`` is declared: True, "probe", or None when it is not."""
        if capability not in CAPABILITY_NAMES:
            raise ValueError(f"unknown capability {capability!r} (known: {CAPABILITY_NAMES})")
        value = getattr(self, capability)
        if isinstance(value, Endpoint):
            return value.offered
        return value or None


class ApiConfig(_Strict):
    dialect: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="which adapter speaks this API (paths, field names, id formats)",
    )
    base_url: str = Field(pattern=r"^https?://", description="default base URL (the stand-in)")
    base_url_env: EnvName = Field(description="env var that overrides base_url")
    read_timeout_seconds: float = Field(default=10.0, gt=0, lt=35)

    _check = field_validator("base_url_env")(_env_name)


class DuffelConfig(_Strict):
    token_env: EnvName
    rate_limit: RateLimit = RateLimit(requests=60, window_seconds=60)
    read_timeout_seconds: float = Field(
        default=30.0, gt=0, description="read timeout of Duffel calls other than order creation"
    )

    _check = field_validator("token_env")(_env_name)


class TenantConfig(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")
    name: str = Field(min_length=1)
    member_id_pattern: str = Field(description="regular expression a member id must match")
    currency: Currency
    rules: BusinessRules = BusinessRules()
    rate_limit: RateLimit
    api: ApiConfig
    auth: Auth
    capabilities: Capabilities = Capabilities()
    duffel: DuffelConfig

    @model_validator(mode="after")
    def _partner_session_needs_sessions(self) -> TenantConfig:
        if self.capabilities.partner_session and self.auth.kind != "jwt_session":
            raise ValueError(
                "capabilities.partner_session: only a jwt_session tenant has a partner session"
            )
        return self

    @field_validator("member_id_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


def describe_errors(error: ValidationError, whole: str = "(file)") -> str:
    """``field 'amount': Input should be a valid decimal`` (every failing field, joined);
    ``whole`` names what an error without a field location is about."""
    return "; ".join(
        f"field '{'.'.join(str(part) for part in item['loc']) or whole}': {item['msg']}"
        for item in error.errors()
    )


class _DuplicateKey(yaml.MarkedYAMLError):
    """A mapping that names one key twice (PyYAML would silently keep the last)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys instead of letting the last one win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                path = ".".join([*self._path_to(node), str(key)])
                raise _DuplicateKey(
                    problem=f"key '{path}' appears twice: on line {seen[key]} and on line {line}",
                    problem_mark=key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def _path_to(self, target: yaml.Node) -> list[str]:
        """The keys leading from the document root to ``target``, for the error message."""

        def walk(node: yaml.Node, trail: list[str]) -> list[str] | None:
            if node is target:
                return trail
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    found = walk(value_node, [*trail, str(key_node.value)])
                    if found is not None:
                        return found
            elif isinstance(node, yaml.SequenceNode):
                for index, item in enumerate(node.value):
                    found = walk(item, [*trail, str(index)])
                    if found is not None:
                        return found
            return None

        root = getattr(self, "_root", None)
        return (walk(root, []) or []) if root is not None else []

    def construct_document(self, node: yaml.Node) -> object:
        self._root = node
        return super().construct_document(node)


def load_tenant_file(path: Path) -> TenantConfig:
    """Load and validate one tenant file; errors name the file and the field."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except _DuplicateKey as exc:
        raise RegistryError(f"{path.name}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RegistryError(f"{path.name}: expected a mapping of fields at the top level")
    try:
        tenant = TenantConfig.model_validate(raw)
    except ValidationError as exc:
        # Not chained: pydantic's error keeps the input values, which may be a pasted secret.
        raise RegistryError(f"{path.name}: {describe_errors(exc)}") from None
    if tenant.id != path.stem:
        raise RegistryError(
            f"{path.name}: field 'id' is {tenant.id!r} but the file is named {path.stem!r}"
        )
    return tenant


def load_registry(directory: Path | None = None) -> dict[str, TenantConfig]:
    """All tenants, keyed by id, in file-name order."""
    folder = directory or REGISTRY_DIR
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise RegistryError(f"no tenant files (*.yaml) in {folder}")
    return {tenant.id: tenant for tenant in map(load_tenant_file, files)}
