"""A tenant is a partition: one per file in the tenant registry."""

from __future__ import annotations

import dagster as dg

from tenants.settings import get_registry

tenant_partitions = dg.StaticPartitionsDefinition(sorted(get_registry()))
