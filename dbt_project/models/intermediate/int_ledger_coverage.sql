-- The tenants whose ledger the warehouse can check the platform's charges and refunds against
-- (tenant_id): for now, those with any ledger record landed. Every ledger kind of
-- reconciliation_issues is limited to these tenants, and this is the one place that decides
-- it; a tenant outside it has no ledger check, not a clean one.
with

ledger as (

    select * from {{ ref('stg_loyalty__ledger_transactions') }}

),

covered as (

    select distinct tenant_id
    from ledger

)

select * from covered
