"""Our own platform as a source: the booking API's feeds, landed as raw/platform/booking_events
(the event feed) and raw/platform/flight_searches (the searches feed).

One partition per tenant, read with the operator token (``BOOKING_OPERATOR_TOKEN``) from the
API at ``BOOKING_API_URL`` by cursor; the cursor (the last id) is committed in the same
atomic batch file as the records, so a re-run resumes from what has landed and lands each
record exactly once. Without a token, or with the API not reachable, the partition's
materialization says "not offered: ..." and lands nothing; other sources are unaffected.
"""
