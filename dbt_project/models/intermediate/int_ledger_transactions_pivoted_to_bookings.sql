-- One row per booking the ledger knows (tenant_id, booking_id): its transactions side by side.
-- Incremental: a build re-pivots only the bookings with a transaction landed since the last
-- one, from all of their transactions (macros/incremental.sql).
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

    select distinct tenant_id, booking_id
    from {{ ref('stg_loyalty__ledger_transactions') }}
    where booking_id is not null
        and {{ built_since_last_build() }}

),

ledger as (

    select transactions.*
    from {{ ref('stg_loyalty__ledger_transactions') }} as transactions
    inner join changed_bookings
        on transactions.tenant_id = changed_bookings.tenant_id
        and transactions.booking_id = changed_bookings.booking_id

),
{% else %}
ledger as (

    select * from {{ ref('stg_loyalty__ledger_transactions') }}
    where booking_id is not null

),
{% endif %}

classified as (

    select
        *,
        transaction_type = 'deduction' and status = 'posted' as is_deduction,
        transaction_type = 'refund' and status = 'posted' as is_refund,
        transaction_type = 'cashback' and status = 'posted' as is_cashback

    from ledger

),

pivoted as (

    select
        tenant_id,
        booking_id,
        max(member_id) as member_id,
        min(created_at) as first_transaction_at,

        min(case when is_deduction then transaction_id end) as deduction_transaction_id,
        sum(case when is_deduction then 1 else 0 end) as deduction_count,
        -- deductions are negative in the ledger; a booking's charge is positive units
        sum(case when is_deduction then -amount end) as charged_amount,
        min(case when is_deduction then created_at end) as charged_at,

        min(case when is_refund then transaction_id end) as refund_transaction_id,
        sum(case when is_refund then amount end) as refunded_amount,
        min(case when is_refund then created_at end) as refunded_at,

        min(case when is_cashback then transaction_id end) as cashback_transaction_id,
        sum(case when is_cashback then amount end) as cashback_amount,

        max(approval_id) as approval_id,
        min(case when transaction_type = 'approval_request' then created_at end)
            as approval_requested_at,
        max(case when transaction_type = 'approval_decision' then status end)
            as approval_decision,
        min(case when transaction_type = 'approval_decision' then created_at end)
            as approval_decided_at,

        max(loaded_at) as loaded_at

    from classified
    group by tenant_id, booking_id

),

typed as (

    select
        tenant_id,
        booking_id,
        member_id,
        first_transaction_at,
        deduction_transaction_id,
        deduction_count,
        cast(charged_amount as {{ money_type() }}) as charged_amount,
        charged_at,
        refund_transaction_id,
        cast(refunded_amount as {{ money_type() }}) as refunded_amount,
        refunded_at,
        cashback_transaction_id,
        cast(cashback_amount as {{ money_type() }}) as cashback_amount,
        approval_id,
        approval_requested_at,
        approval_decision,
        approval_decided_at,
        loaded_at,
        {{ build_started_at() }} as built_at

    from pivoted

)

select * from typed
