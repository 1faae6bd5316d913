"""The booking API: the platform's system of record for bookings made with loyalty currency."""
