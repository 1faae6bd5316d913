"""The one Dagster code location: ingestion and the warehouse merged into a single graph,
plus the live mode that drives both (orchestration/live.py)."""

import dagster as dg

import ingestion.definitions
import warehouse.definitions
from orchestration import live

defs = dg.Definitions.merge(ingestion.definitions.defs, warehouse.definitions.defs, live.defs)
