-- One row per ledger transaction (tenant_id, transaction_id), for the dashboard's booking
-- detail page: the tenant's own record of what was charged, refunded and credited.
-- Incremental: a build replaces the transactions landed since the last one
-- (macros/incremental.sql).
{{
    config(
        materialized='incremental',
        unique_key=['tenant_id', 'transaction_id'],
    )
}}

with

transactions as (

    select * from {{ ref('stg_loyalty__ledger_transactions') }}
    where {{ built_since_last_build() }}

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
        updated_at,
        loaded_at,
        {{ build_started_at() }} as built_at

    from transactions

)

select * from final
