"""The one Dagster code location: ingestion and the warehouse merged into a single graph.
(Live mode, orchestration/live.py, is a service beside it that reports to the same instance.)"""

import dagster as dg

import ingestion.definitions
import warehouse.definitions

defs = dg.Definitions.merge(ingestion.definitions.defs, warehouse.definitions.defs)
