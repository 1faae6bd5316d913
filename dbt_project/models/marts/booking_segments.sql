-- One row per flight segment of a booking's Duffel order (tenant_id, booking_id, slice_index,
-- segment_index), for the dashboard's booking detail page.
-- Incremental: a build replaces the segments of every booking rebuilt since the last one
-- (its order's segments land with the order, so a new order version means a rebuilt booking;
-- macros/incremental.sql).
{{
    config(
        materialized='incremental',
        unique_key=['tenant_id', 'booking_id'],
    )
}}

with

segments as (

    select * from {{ ref('stg_duffel__order_segments') }}

),

bookings as (

    select * from {{ ref('bookings') }}
    where duffel_order_id is not null
        and {{ built_since_last_build() }}

),

final as (

    select
        bookings.tenant_id,
        bookings.booking_id,
        segments.order_id,
        segments.slice_index,
        segments.segment_index,
        segments.origin,
        segments.destination,
        segments.departing_at,
        segments.arriving_at,
        segments.marketing_carrier,
        segments.flight_number,
        segments.duration_minutes,
        {{ build_started_at() }} as built_at

    from segments
    inner join bookings
        on segments.tenant_id = bookings.tenant_id
        and segments.order_id = bookings.duffel_order_id

)

select * from final
