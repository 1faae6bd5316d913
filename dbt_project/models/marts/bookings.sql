-- One row per booking the booking API made, with its Duffel order's flight details.
-- Incremental: a build replaces the bookings re-assembled since the last one
-- (macros/incremental.sql).
{{
    config(
        materialized='incremental',
        unique_key=['tenant_id', 'booking_id'],
    )
}}

with

bookings as (

    select * from {{ ref('int_bookings_assembled') }}
    where {{ built_since_last_build() }}

),

airlines as (

    select * from {{ ref('stg_duffel__airlines') }}

),

final as (

    select
        bookings.booking_id,
        bookings.tenant_id,
        bookings.member_id,
        bookings.duffel_order_id,
        bookings.pnr,
        bookings.deduction_transaction_id,
        bookings.refund_transaction_id,
        -- the platform records neither: a cashback is credited with the charge, and an
        -- approval is the operator's decision on the booking itself (see the approvals mart)
        cast(null as {{ dbt.type_string() }}) as cashback_transaction_id,
        cast(null as {{ dbt.type_string() }}) as approval_id,
        bookings.status,
        bookings.created_at,
        bookings.refunded_at,
        bookings.departure_at,
        bookings.origin,
        bookings.destination,
        bookings.airline_iata,
        coalesce(airlines.airline_name, bookings.airline_name) as airline_name,
        bookings.cabin,
        bookings.passenger_count,
        bookings.loyalty_amount,
        bookings.loyalty_currency,
        bookings.usd_per_unit,
        bookings.usd_amount,
        bookings.fare_amount,
        bookings.fare_currency,
        bookings.fare_usd,
        bookings.is_fare_unconvertible,
        bookings.cashback_amount,
        bookings.cashback_usd,
        bookings.refund_amount,
        bookings.refund_usd,
        bookings.net_usd,
        bookings.loaded_at,
        {{ build_started_at() }} as built_at

    from bookings
    left join airlines
        on bookings.airline_iata = airlines.iata_code

)

select * from final
