-- One row per booking the booking API made (tenant_id, booking_id): the platform's record of
-- it (folded from its events: status, amounts, the rate it used, its recorded ids) joined to
-- its Duffel order, found by the order id the platform recorded or, when it recorded none
-- (or Duffel has no order of that id), by the order metadata's booking_id.
-- Incremental: a build re-assembles only the bookings whose events or order changed since the
-- last one (macros/incremental.sql). The FX seed only fills in for a fare whose currency the
-- platform did not price; when a seed changes, the pipeline rebuilds in full
-- (warehouse/dbt.py).
{{
    config(
        materialized='incremental',
        unique_key=['tenant_id', 'booking_id'],
    )
}}

with

{% if is_incremental() %}
-- Each relation is read directly rather than through a shared CTE, which DuckDB would
-- materialize in full; here the filters reach the table scans.
changed_orders as (

    select tenant_id, order_id, booking_id
    from {{ ref('stg_duffel__orders') }}
    where {{ built_since_last_build() }}

),

changed_bookings as (

    select tenant_id, booking_id
    from {{ ref('int_booking_events_pivoted_to_bookings') }}
    where {{ built_since_last_build() }}

    union

    select platform.tenant_id, platform.booking_id
    from {{ ref('int_booking_events_pivoted_to_bookings') }} as platform
    inner join changed_orders
        on platform.tenant_id = changed_orders.tenant_id
        and platform.duffel_order_id = changed_orders.order_id

    union

    select tenant_id, booking_id
    from changed_orders
    where booking_id is not null

),

platform_bookings as (

    select platform.*
    from {{ ref('int_booking_events_pivoted_to_bookings') }} as platform
    inner join changed_bookings
        on platform.tenant_id = changed_bookings.tenant_id
        and platform.booking_id = changed_bookings.booking_id

),
{% else %}
platform_bookings as (

    select * from {{ ref('int_booking_events_pivoted_to_bookings') }}

),
{% endif %}

orders as (

    select * from {{ ref('stg_duffel__orders') }}

),

tenants as (

    select * from {{ ref('stg_registry__tenants') }}

),

fx_rates as (

    select * from {{ ref('fx_rates') }}

),

candidate_orders as (

    -- match_rank 0: the order the platform recorded; 1: an order whose metadata names the
    -- booking (the platform recorded none, or Duffel lacks the one it recorded)
    {%- set matches = [('duffel_order_id', 'order_id'), ('booking_id', 'booking_id')] %}
    {%- for booking_key, order_key in matches %}
    {% if not loop.first %}union all{% endif %}

    select
        platform_bookings.tenant_id,
        platform_bookings.booking_id,
        {{ loop.index0 }} as match_rank,
        orders.order_id,
        orders.pnr,
        orders.created_at,
        orders.paid_at,
        orders.is_awaiting_payment,
        orders.cancelled_at,
        orders.refund_amount,
        orders.departing_at,
        orders.origin,
        orders.destination,
        orders.airline_iata,
        orders.airline_name,
        orders.cabin,
        orders.passenger_count,
        orders.total_amount,
        orders.total_currency,
        orders.loaded_at

    from platform_bookings
    inner join orders
        on platform_bookings.tenant_id = orders.tenant_id
        and platform_bookings.{{ booking_key }} = orders.{{ order_key }}
    {%- endfor %}

),

ranked_orders as (

    -- Should a retry have made several, the recorded one counts, then a live ticketed one.
    select
        *,
        row_number() over (
            partition by tenant_id, booking_id
            order by
                match_rank asc,
                case when cancelled_at is null then 0 else 1 end asc,
                created_at desc,
                order_id asc
        ) as order_rank

    from candidate_orders

),

booking_orders as (

    select * from ranked_orders
    where order_rank = 1

),

joined as (

    select
        platform_bookings.tenant_id,
        platform_bookings.booking_id,
        platform_bookings.member_id,
        platform_bookings.status,
        platform_bookings.duffel_order_id as recorded_order_id,
        booking_orders.order_id as matched_order_id,
        booking_orders.pnr,
        platform_bookings.loyalty_transaction_id as deduction_transaction_id,
        platform_bookings.refund_transaction_id,
        platform_bookings.created_at,
        cast(platform_bookings.created_at as date) as booked_on,
        platform_bookings.last_event_at,
        platform_bookings.approval_requested_at,
        platform_bookings.approval_decided_at,
        platform_bookings.approval_decision,
        platform_bookings.approval_decided_by,
        platform_bookings.charged_at,
        platform_bookings.refunded_at,
        platform_bookings.cancelling_at,
        booking_orders.created_at as order_created_at,
        booking_orders.paid_at as order_paid_at,
        -- a real order says it was paid by no longer awaiting payment; paid_at is optional
        coalesce(
            booking_orders.paid_at is not null or not booking_orders.is_awaiting_payment, false
        ) as is_order_paid,
        booking_orders.cancelled_at as order_cancelled_at,
        booking_orders.refund_amount as order_refund_amount,
        booking_orders.departing_at as departure_at,
        booking_orders.origin,
        booking_orders.destination,
        booking_orders.airline_iata,
        booking_orders.airline_name,
        booking_orders.cabin,
        booking_orders.passenger_count,
        coalesce(booking_orders.total_amount, platform_bookings.fare_amount) as fare_amount,
        coalesce(booking_orders.total_currency, platform_bookings.fare_currency) as fare_currency,
        platform_bookings.fare_currency as priced_fare_currency,
        platform_bookings.fx_rate as priced_fx_rate,
        -- the platform's charge: what it recorded when it charged, nothing when it never did
        case
            when platform_bookings.loyalty_transaction_id is not null
                then platform_bookings.loyalty_amount
            else cast(0 as {{ money_type() }})
        end as loyalty_amount,
        case
            when platform_bookings.loyalty_transaction_id is not null
                then platform_bookings.usd_amount
            else cast(0 as {{ money_type() }})
        end as usd_amount,
        coalesce(platform_bookings.loyalty_currency, tenants.currency) as loyalty_currency,
        platform_bookings.usd_per_unit,
        coalesce(platform_bookings.refund_amount, cast(0 as {{ money_type() }})) as refund_amount,
        coalesce(platform_bookings.cashback_amount, cast(0 as {{ money_type() }}))
            as cashback_amount,
        tenants.currency_decimals,
        tenants.cashback_rate,
        greatest(
            platform_bookings.loaded_at,
            coalesce(booking_orders.loaded_at, platform_bookings.loaded_at)
        ) as loaded_at

    from platform_bookings
    left join booking_orders
        on platform_bookings.tenant_id = booking_orders.tenant_id
        and platform_bookings.booking_id = booking_orders.booking_id
    left join tenants
        on platform_bookings.tenant_id = tenants.tenant_id

),

rated as (

    select
        joined.*,
        case
            when joined.fare_currency = 'USD' then cast(1 as {{ rate_type() }})
            -- the rate the booking API priced the fare at, else the FX seed of that day
            when joined.fare_currency = joined.priced_fare_currency
                and joined.priced_fx_rate is not null
                then joined.priced_fx_rate
            else fx_rates.usd_per_unit
        end as fare_usd_per_unit

    from joined
    left join fx_rates
        on joined.fare_currency = fx_rates.currency
        and joined.booked_on >= fx_rates.valid_from
        and joined.booked_on < coalesce(fx_rates.valid_to, cast('9999-12-31' as date))

),

converted as (

    select
        *,
        -- a full refund gives back exactly the USD charged; a partial one converts at the
        -- booking's rate
        case
            when refund_amount = loyalty_amount then usd_amount
            else {{ to_usd('refund_amount', 'usd_per_unit') }}
        end as refund_usd,
        {{ to_usd('cashback_amount', 'usd_per_unit') }} as cashback_usd,
        {{ to_usd('fare_amount', 'fare_usd_per_unit') }} as fare_usd,
        fare_amount is not null and fare_usd_per_unit is null as is_fare_unconvertible,
        {{ cashback_for('loyalty_amount', 'cashback_rate') }} as expected_cashback_amount

    from rated

),

checked as (

    select
        *,
        cast(usd_amount - refund_usd - cashback_usd as {{ money_type() }}) as net_usd,
        case
            when fare_usd is not null and usd_per_unit is not null
                then {{ loyalty_units_for_usd('fare_usd', 'usd_per_unit', 'currency_decimals') }}
        end as expected_loyalty_amount,
        case
            when fare_usd is not null and deduction_transaction_id is not null
                then {{ is_rounded_up_charge(
                    'loyalty_amount', 'usd_per_unit', 'fare_usd', 'currency_decimals'
                ) }}
        end as is_charge_consistent_with_fare

    from converted

),

final as (

    select
        tenant_id,
        booking_id,
        member_id,
        status,
        recorded_order_id,
        matched_order_id,
        coalesce(recorded_order_id, matched_order_id) as duffel_order_id,
        pnr,
        deduction_transaction_id,
        refund_transaction_id,
        created_at,
        booked_on,
        last_event_at,
        approval_requested_at,
        approval_decided_at,
        approval_decision,
        approval_decided_by,
        charged_at,
        refunded_at,
        cancelling_at,
        order_created_at,
        order_paid_at,
        is_order_paid,
        order_cancelled_at,
        order_refund_amount,
        departure_at,
        origin,
        destination,
        airline_iata,
        airline_name,
        cabin,
        passenger_count,
        loyalty_amount,
        loyalty_currency,
        currency_decimals,
        usd_per_unit,
        usd_amount,
        fare_amount,
        fare_currency,
        fare_usd_per_unit,
        fare_usd,
        is_fare_unconvertible,
        cashback_rate,
        cashback_amount,
        expected_cashback_amount,
        cashback_usd,
        refund_amount,
        refund_usd,
        net_usd,
        expected_loyalty_amount,
        is_charge_consistent_with_fare,
        loaded_at,
        {{ build_started_at() }} as built_at

    from checked

)

select * from final
