-- One row per booking (tenant_id, booking_id): the ledger's side joined to the Duffel order
-- whose metadata names the booking, priced at the rates in force when it was booked.
-- Incremental: a build re-assembles only the bookings whose ledger side or order changed
-- since the last one (macros/incremental.sql). Rates are seeds: when they change, the
-- pipeline rebuilds in full (transforms/warehouse.py).
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
changed_bookings as (

    select tenant_id, booking_id
    from {{ ref('int_ledger_transactions_pivoted_to_bookings') }}
    where {{ built_since_last_build() }}

    union

    select tenant_id, booking_id
    from {{ ref('stg_duffel__orders') }}
    where booking_id is not null
        and {{ built_since_last_build() }}

),

ledger_bookings as (

    select pivoted.*
    from {{ ref('int_ledger_transactions_pivoted_to_bookings') }} as pivoted
    inner join changed_bookings
        on pivoted.tenant_id = changed_bookings.tenant_id
        and pivoted.booking_id = changed_bookings.booking_id

),

orders as (

    select booking_orders.*
    from {{ ref('stg_duffel__orders') }} as booking_orders
    inner join changed_bookings
        on booking_orders.tenant_id = changed_bookings.tenant_id
        and booking_orders.booking_id = changed_bookings.booking_id

),
{% else %}
ledger_bookings as (

    select * from {{ ref('int_ledger_transactions_pivoted_to_bookings') }}

),

orders as (

    select * from {{ ref('stg_duffel__orders') }}
    where booking_id is not null

),
{% endif %}

tenants as (

    select * from {{ ref('tenants') }}

),

loyalty_rates as (

    select * from {{ ref('loyalty_rates') }}

),

fx_rates as (

    select * from {{ ref('fx_rates') }}

),

ranked_orders as (

    -- A booking has one order; should a retry have made more, the ticketed one counts.
    select
        *,
        row_number() over (
            partition by tenant_id, booking_id
            order by
                case when paid_at is not null and cancelled_at is null then 0 else 1 end asc,
                created_at desc,
                order_id asc
        ) as order_rank

    from orders

),

booking_orders as (

    select * from ranked_orders
    where order_rank = 1

),

joined as (

    select
        coalesce(ledger_bookings.tenant_id, booking_orders.tenant_id) as tenant_id,
        coalesce(ledger_bookings.booking_id, booking_orders.booking_id) as booking_id,
        coalesce(ledger_bookings.member_id, booking_orders.member_id) as member_id,
        booking_orders.order_id as duffel_order_id,
        booking_orders.pnr,
        ledger_bookings.deduction_transaction_id,
        ledger_bookings.deduction_count,
        ledger_bookings.refund_transaction_id,
        ledger_bookings.cashback_transaction_id,
        ledger_bookings.approval_id,
        ledger_bookings.approval_requested_at,
        ledger_bookings.approval_decision,
        ledger_bookings.charged_at,
        ledger_bookings.refunded_at,
        -- when the booking was made: its first ledger record or its order, whichever came first
        least(
            coalesce(ledger_bookings.first_transaction_at, booking_orders.created_at),
            coalesce(booking_orders.created_at, ledger_bookings.first_transaction_at)
        ) as created_at,
        booking_orders.departing_at as departure_at,
        booking_orders.origin,
        booking_orders.destination,
        booking_orders.airline_iata,
        booking_orders.airline_name,
        booking_orders.cabin,
        booking_orders.passenger_count,
        booking_orders.total_amount as fare_amount,
        booking_orders.total_currency as fare_currency,
        booking_orders.paid_at as order_paid_at,
        booking_orders.cancelled_at as order_cancelled_at,
        booking_orders.refund_amount as order_refund_amount,
        coalesce(ledger_bookings.charged_amount, cast(0 as {{ money_type() }})) as loyalty_amount,
        coalesce(ledger_bookings.refunded_amount, cast(0 as {{ money_type() }})) as refund_amount,
        coalesce(ledger_bookings.cashback_amount, cast(0 as {{ money_type() }})) as cashback_amount,
        -- the newest landing among the records the booking is built from
        greatest(
            coalesce(ledger_bookings.loaded_at, booking_orders.loaded_at),
            coalesce(booking_orders.loaded_at, ledger_bookings.loaded_at)
        ) as loaded_at

    from ledger_bookings
    full outer join booking_orders
        on ledger_bookings.tenant_id = booking_orders.tenant_id
        and ledger_bookings.booking_id = booking_orders.booking_id

),

dated as (

    select
        *,
        cast(created_at as date) as booked_on

    from joined

),

rated as (

    select
        dated.*,
        tenants.currency as loyalty_currency,
        tenants.currency_decimals,
        tenants.cashback_rate,
        loyalty_rates.usd_per_unit,
        case
            when dated.fare_currency = 'USD' then cast(1 as {{ rate_type() }})
            else fx_rates.usd_per_unit
        end as fare_usd_per_unit

    from dated
    left join tenants
        on dated.tenant_id = tenants.tenant_id
    left join loyalty_rates
        on dated.tenant_id = loyalty_rates.tenant_id
        and dated.booked_on >= loyalty_rates.valid_from
        and dated.booked_on < coalesce(loyalty_rates.valid_to, cast('9999-12-31' as date))
    left join fx_rates
        on dated.fare_currency = fx_rates.currency
        and dated.booked_on >= fx_rates.valid_from
        and dated.booked_on < coalesce(fx_rates.valid_to, cast('9999-12-31' as date))

),

converted as (

    select
        *,
        {{ booking_status(
            'deduction_transaction_id',
            'refund_transaction_id',
            'order_paid_at',
            'order_cancelled_at',
            'approval_requested_at',
            'approval_decision'
        ) }} as status,
        {{ to_usd('loyalty_amount', 'usd_per_unit') }} as usd_amount,
        {{ to_usd('refund_amount', 'usd_per_unit') }} as refund_usd,
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
            when fare_usd is not null
                then {{ loyalty_units_for_usd('fare_usd', 'usd_per_unit', 'currency_decimals') }}
        end as expected_loyalty_amount,
        case
            when fare_usd is not null
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
        duffel_order_id,
        pnr,
        deduction_transaction_id,
        deduction_count,
        refund_transaction_id,
        cashback_transaction_id,
        approval_id,
        status,
        created_at,
        booked_on,
        approval_requested_at,
        approval_decision,
        charged_at,
        refunded_at,
        order_paid_at,
        order_cancelled_at,
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
        order_refund_amount,
        net_usd,
        expected_loyalty_amount,
        is_charge_consistent_with_fare,
        loaded_at,
        {{ build_started_at() }} as built_at

    from checked

)

select * from final
