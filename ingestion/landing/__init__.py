"""The landing zone shared by every source: immutable Parquet batches, cursors, quarantine."""
