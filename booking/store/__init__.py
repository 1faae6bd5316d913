"""The booking store: tables, migrations, repositories and the unit of work."""
