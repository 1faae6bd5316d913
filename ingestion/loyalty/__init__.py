"""Assets that land each tenant's loyalty ledger and member balances."""
