"""The one Dagster code location: ingestion and transforms merged into a single graph."""

import dagster as dg

import ingestion.definitions
import transforms.definitions

defs = dg.Definitions.merge(ingestion.definitions.defs, transforms.definitions.defs)
