-- The funnel only narrows: no more confirmed than bookings, no more abandoned searches or
-- searching members than searches, and a day with no searches has none abandoned.
select
    tenant_id,
    day,
    searches,
    searching_members,
    bookings,
    confirmed,
    abandoned_searches

from {{ ref('booking_funnel') }}
where
    confirmed > bookings
    or abandoned_searches > searches
    or searching_members > searches
    or (searches = 0 and searching_members > 0)
