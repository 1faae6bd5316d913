"""Clients of the services the platform talks to: the shared HTTP plumbing, the tenants' loyalty APIs,
Duffel and the booking API's own feeds."""
