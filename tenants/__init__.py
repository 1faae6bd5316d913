"""Everything the platform knows about its tenants and how to talk to their APIs and to Duffel."""
