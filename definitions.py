"""The one Dagster code location: ingestion and transforms merged into a single graph,
plus the live mode that drives both (live.py)."""

import dagster as dg

import ingestion.definitions
import live
import transforms.definitions

defs = dg.Definitions.merge(ingestion.definitions.defs, transforms.definitions.defs, live.defs)
