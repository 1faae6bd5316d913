"""The command-line glue: the demo, one full pipeline run, and live mode."""
