-- The fare priced in loyalty units (integer ceiling division) must satisfy the division-free
-- form of the same rule: it covers the fare and one minor unit less would not.
select
    tenant_id,
    booking_id,
    fare_usd,
    usd_per_unit,
    expected_loyalty_amount

from {{ ref('int_bookings_assembled') }}
where fare_usd is not null
    and not {{ is_rounded_up_charge('expected_loyalty_amount', 'usd_per_unit', 'fare_usd', 'currency_decimals') }}
