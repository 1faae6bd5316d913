"""The one Dagster code location: ingestion and transforms merged into a single graph."""

import dagster as dg

from ingestion.definitions import defs as ingestion_defs
from transforms.definitions import defs as transforms_defs

defs = dg.Definitions.merge(ingestion_defs, transforms_defs)
