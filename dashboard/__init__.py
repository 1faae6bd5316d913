"""The Dash dashboard: reads only the serving snapshot, through one data-access module."""
