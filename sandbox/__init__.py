"""Stand-ins for the tenant loyalty APIs and Duffel, and the generator of their history."""
