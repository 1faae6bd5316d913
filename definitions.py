"""The one Dagster code location: ingestion and transforms merged into a single graph.
(Live mode, live.py, is a service beside it that reports to the same instance.)"""

import dagster as dg

import ingestion.definitions
import transforms.definitions

defs = dg.Definitions.merge(ingestion.definitions.defs, transforms.definitions.defs)
