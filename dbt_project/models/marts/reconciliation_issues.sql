-- One row per disagreement between the booking API's records (the backbone) and the checks
-- on them: the tenant's ledger, where it can be checked (int_ledger_coverage), and the
-- tenant's Duffel orders, always. expected is what the platform recorded, actual what the
-- check holds; ledger amounts are units charged or refunded, positive, in currency.
with

bookings as (

    select * from {{ ref('int_bookings_assembled') }}

),

ledger as (

    select * from {{ ref('stg_loyalty__ledger_transactions') }}

),

orders as (

    select * from {{ ref('stg_duffel__orders') }}

),

coverage as (

    select * from {{ ref('int_ledger_coverage') }}

),

checked_bookings as (

    -- bookings of tenants whose ledger can be checked
    select bookings.*
    from bookings
    inner join coverage
        on bookings.tenant_id = coverage.tenant_id

),

deductions as (

    select * from ledger
    where transaction_type = 'deduction'

),

refunds as (

    select * from ledger
    where transaction_type = 'refund'

),

ledger_missing_deduction as (

    select
        'ledger_missing_deduction' as kind,
        checked_bookings.tenant_id,
        checked_bookings.booking_id,
        checked_bookings.member_id,
        checked_bookings.deduction_transaction_id as transaction_id,
        checked_bookings.duffel_order_id as order_id,
        checked_bookings.loyalty_currency as currency,
        checked_bookings.loyalty_amount as expected,
        cast(null as {{ money_type() }}) as actual,
        {{ text_literal(
            "The booking API recorded this charge, but the tenant's ledger holds no deduction "
        ) }}
        || 'with its transaction id.' as explanation,
        checked_bookings.created_at as booked_at

    from checked_bookings
    left join deductions
        on checked_bookings.tenant_id = deductions.tenant_id
        and checked_bookings.deduction_transaction_id = deductions.transaction_id
    where checked_bookings.deduction_transaction_id is not null
        and deductions.transaction_id is null

),

ledger_amount_mismatch as (

    select
        'ledger_amount_mismatch' as kind,
        checked_bookings.tenant_id,
        checked_bookings.booking_id,
        checked_bookings.member_id,
        checked_bookings.deduction_transaction_id as transaction_id,
        checked_bookings.duffel_order_id as order_id,
        checked_bookings.loyalty_currency as currency,
        checked_bookings.loyalty_amount as expected,
        -- deductions are negative in the ledger; a charge is positive units
        cast(-deductions.amount as {{ money_type() }}) as actual,
        {{ text_literal(
            "The tenant's ledger deducted a different amount than the booking API charged."
        ) }}
            as explanation,
        checked_bookings.created_at as booked_at

    from checked_bookings
    inner join deductions
        on checked_bookings.tenant_id = deductions.tenant_id
        and checked_bookings.deduction_transaction_id = deductions.transaction_id
    where -deductions.amount <> checked_bookings.loyalty_amount

),

ledger_unknown_deduction as (

    select
        'ledger_unknown_deduction' as kind,
        deductions.tenant_id,
        cast(null as {{ dbt.type_string() }}) as booking_id,
        deductions.member_id,
        deductions.transaction_id,
        cast(null as {{ dbt.type_string() }}) as order_id,
        deductions.currency,
        cast(null as {{ money_type() }}) as expected,
        cast(-deductions.amount as {{ money_type() }}) as actual,
        {{ text_literal(
            "The tenant's ledger holds a posted deduction whose reference is no booking the "
        ) }}
        || 'booking API made.' as explanation,
        deductions.created_at as booked_at

    from deductions
    inner join coverage
        on deductions.tenant_id = coverage.tenant_id
    left join bookings
        on deductions.tenant_id = bookings.tenant_id
        and deductions.booking_id = bookings.booking_id
    where deductions.status = 'posted'
        and bookings.booking_id is null

),

ledger_missing_refund as (

    select
        'ledger_missing_refund' as kind,
        checked_bookings.tenant_id,
        checked_bookings.booking_id,
        checked_bookings.member_id,
        checked_bookings.refund_transaction_id as transaction_id,
        checked_bookings.duffel_order_id as order_id,
        checked_bookings.loyalty_currency as currency,
        checked_bookings.refund_amount as expected,
        cast(null as {{ money_type() }}) as actual,
        {{ text_literal(
            "The booking API recorded this refund, but the tenant's ledger holds no refund "
        ) }}
        || 'with its transaction id.' as explanation,
        checked_bookings.created_at as booked_at

    from checked_bookings
    left join refunds
        on checked_bookings.tenant_id = refunds.tenant_id
        and checked_bookings.refund_transaction_id = refunds.transaction_id
    where checked_bookings.refund_transaction_id is not null
        and refunds.transaction_id is null

),

order_missing as (

    select
        'order_missing' as kind,
        bookings.tenant_id,
        bookings.booking_id,
        bookings.member_id,
        bookings.deduction_transaction_id as transaction_id,
        bookings.recorded_order_id as order_id,
        cast(null as {{ dbt.type_string() }}) as currency,
        cast(null as {{ money_type() }}) as expected,
        cast(null as {{ money_type() }}) as actual,
        {{ text_literal(
            "The booking API recorded this Duffel order, but the tenant's Duffel organisation "
        ) }}
        || 'has no order with its id.' as explanation,
        bookings.created_at as booked_at

    from bookings
    left join orders
        on bookings.tenant_id = orders.tenant_id
        and bookings.recorded_order_id = orders.order_id
    where bookings.recorded_order_id is not null
        and orders.order_id is null

),

order_not_cancelled as (

    select
        'order_not_cancelled' as kind,
        tenant_id,
        booking_id,
        member_id,
        deduction_transaction_id as transaction_id,
        matched_order_id as order_id,
        cast(null as {{ dbt.type_string() }}) as currency,
        cast(null as {{ money_type() }}) as expected,
        cast(null as {{ money_type() }}) as actual,
        'The booking API cancelled this booking at Duffel, but its Duffel order is still '
        || 'live (not cancelled).' as explanation,
        created_at as booked_at

    from bookings
    -- cancelled, or cancelled at Duffel with the refund still owed
    where (status = 'cancelled' or (status = 'refund_pending' and cancelling_at is not null))
        and matched_order_id is not null
        and order_cancelled_at is null

),

order_without_booking as (

    select
        'order_without_booking' as kind,
        orders.tenant_id,
        cast(null as {{ dbt.type_string() }}) as booking_id,
        orders.member_id,
        orders.loyalty_transaction_id as transaction_id,
        orders.order_id,
        cast(null as {{ dbt.type_string() }}) as currency,
        cast(null as {{ money_type() }}) as expected,
        cast(null as {{ money_type() }}) as actual,
        {{ text_literal(
            "The tenant's Duffel organisation holds an order the booking API did not make: no "
        ) }}
        || 'booking recorded its id and its metadata names no booking.' as explanation,
        orders.created_at as booked_at

    from orders
    left join bookings as by_recorded_id
        on orders.tenant_id = by_recorded_id.tenant_id
        and orders.order_id = by_recorded_id.recorded_order_id
    left join bookings as by_metadata
        on orders.tenant_id = by_metadata.tenant_id
        and orders.booking_id = by_metadata.booking_id
    where by_recorded_id.booking_id is null
        and by_metadata.booking_id is null

),

issues as (

    select * from ledger_missing_deduction
    union all
    select * from ledger_amount_mismatch
    union all
    select * from ledger_unknown_deduction
    union all
    select * from ledger_missing_refund
    union all
    select * from order_missing
    union all
    select * from order_not_cancelled
    union all
    select * from order_without_booking

),

final as (

    select
        {{ dbt.hash(dbt.concat([
            'kind', "'|'", 'tenant_id',
            "'|'", "coalesce(booking_id, '')",
            "'|'", "coalesce(order_id, '')",
            "'|'", "coalesce(transaction_id, '')"
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
