"""Assets that land Duffel orders (per tenant organisation) and Duffel reference data."""
