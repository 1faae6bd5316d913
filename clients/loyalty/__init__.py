"""The tenants' loyalty APIs: one client for every tenant, its typed answers, member credentials."""
