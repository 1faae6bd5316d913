-- One row per ledger transaction (tenant_id, transaction_id), for the dashboard's booking
-- detail page: the tenant's own record of what was charged, refunded and credited.
with

transactions as (

    select * from {{ ref('stg_loyalty__ledger_transactions') }}

),

final as (

    select
        tenant_id,
        transaction_id,
        booking_id,
        member_id,
        transaction_type as type,
        amount,
        currency,
        status,
        related_transaction_id,
        created_at,
        updated_at

    from transactions

)

select * from final
