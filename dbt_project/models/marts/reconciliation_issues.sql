-- One row per disagreement between a tenant's ledger and its Duffel orders. expected and
-- actual are loyalty units (in currency) the ledger should hold and does hold.
with

bookings as (

    select * from {{ ref('int_bookings_assembled') }}

),

orders as (

    select * from {{ ref('stg_duffel__orders') }}

),

deduction_without_order as (

    select
        'deduction_without_order' as kind,
        tenant_id,
        booking_id,
        member_id,
        deduction_transaction_id as transaction_id,
        cast(null as {{ dbt.type_string() }}) as order_id,
        loyalty_currency as currency,
        cast(null as {{ money_type() }}) as expected,
        loyalty_amount as actual,
        'The ledger charged the member for this booking, did not refund it, '
        || 'and no Duffel order names the booking.' as explanation,
        created_at as booked_at

    from bookings
    where deduction_transaction_id is not null
        and duffel_order_id is null
        and refund_transaction_id is null

),

order_without_deduction as (

    select
        'order_without_deduction' as kind,
        tenant_id,
        booking_id,
        member_id,
        cast(null as {{ dbt.type_string() }}) as transaction_id,
        duffel_order_id as order_id,
        loyalty_currency as currency,
        expected_loyalty_amount as expected,
        loyalty_amount as actual,
        'Duffel ticketed (paid) this booking''s order but the ledger holds no posted '
        || 'deduction for it.' as explanation,
        created_at as booked_at

    from bookings
    where order_paid_at is not null
        and deduction_transaction_id is null

),

cancelled_without_refund as (

    select
        'cancelled_without_refund' as kind,
        tenant_id,
        booking_id,
        member_id,
        deduction_transaction_id as transaction_id,
        duffel_order_id as order_id,
        loyalty_currency as currency,
        loyalty_amount as expected,
        refund_amount as actual,
        'The paid Duffel order was cancelled with a refund, but the ledger never '
        || 'refunded the deduction.' as explanation,
        created_at as booked_at

    from bookings
    where order_paid_at is not null
        and order_cancelled_at is not null
        and order_refund_amount > 0
        and deduction_transaction_id is not null
        and refund_transaction_id is null

),

amount_mismatch as (

    select
        'amount_mismatch' as kind,
        tenant_id,
        booking_id,
        member_id,
        deduction_transaction_id as transaction_id,
        duffel_order_id as order_id,
        loyalty_currency as currency,
        expected_loyalty_amount as expected,
        loyalty_amount as actual,
        'The units charged are not the fare in USD priced at the rate in force when '
        || 'booked, rounded up to the currency''s minor unit.' as explanation,
        created_at as booked_at

    from bookings
    where deduction_transaction_id is not null
        and not is_charge_consistent_with_fare

),

refund_mismatch as (

    select
        'refund_mismatch' as kind,
        tenant_id,
        booking_id,
        member_id,
        refund_transaction_id as transaction_id,
        duffel_order_id as order_id,
        loyalty_currency as currency,
        case
            when duffel_order_id is not null and order_cancelled_at is null
                then cast(0 as {{ money_type() }})
            else loyalty_amount
        end as expected,
        refund_amount as actual,
        case
            when duffel_order_id is not null and order_cancelled_at is null
                then 'The ledger refunded a booking whose Duffel order is still live.'
            else 'The ledger refund is not the full amount charged for the booking.'
        end as explanation,
        created_at as booked_at

    from bookings
    where refund_transaction_id is not null
        and (
            refund_amount <> loyalty_amount
            or (duffel_order_id is not null and order_cancelled_at is null)
        )

),

cashback_mismatch as (

    select
        'cashback_mismatch' as kind,
        tenant_id,
        booking_id,
        member_id,
        coalesce(cashback_transaction_id, deduction_transaction_id) as transaction_id,
        duffel_order_id as order_id,
        loyalty_currency as currency,
        expected_cashback_amount as expected,
        cashback_amount as actual,
        'The cashback credited is not the tenant''s cashback rate times the units '
        || 'charged, rounded half-even to the cent.' as explanation,
        created_at as booked_at

    from bookings
    where (deduction_transaction_id is not null or cashback_transaction_id is not null)
        and cashback_amount <> expected_cashback_amount

),

order_without_booking as (

    select
        'order_without_booking' as kind,
        tenant_id,
        cast(null as {{ dbt.type_string() }}) as booking_id,
        member_id,
        loyalty_transaction_id as transaction_id,
        order_id,
        cast(null as {{ dbt.type_string() }}) as currency,
        cast(null as {{ money_type() }}) as expected,
        cast(null as {{ money_type() }}) as actual,
        'The Duffel order carries no booking id in its metadata, so no ledger record '
        || 'can be matched to it.' as explanation,
        created_at as booked_at

    from orders
    where booking_id is null

),

issues as (

    select * from deduction_without_order
    union all
    select * from order_without_deduction
    union all
    select * from cancelled_without_refund
    union all
    select * from amount_mismatch
    union all
    select * from refund_mismatch
    union all
    select * from cashback_mismatch
    union all
    select * from order_without_booking

),

final as (

    select
        {{ dbt.hash(dbt.concat([
            'kind', "'|'", 'tenant_id',
            "'|'", "coalesce(booking_id, '')",
            "'|'", "coalesce(order_id, '')"
        ])) }} as issue_id,
        kind,
        tenant_id,
        booking_id,
        member_id,
        transaction_id,
        order_id,
        currency,
        expected,
        actual,
        explanation,
        booked_at

    from issues

)

select * from final
