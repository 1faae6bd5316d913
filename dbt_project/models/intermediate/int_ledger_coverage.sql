-- The tenants whose ledger the warehouse can check the platform's charges and refunds against
-- (tenant_id): those whose API was last found to offer its ledger feed (a fact landed by
-- ingestion's probe, not the tenant file's hope). Every ledger kind of reconciliation_issues is
-- limited to these tenants, and this is the one place that decides it; a tenant outside it
-- has no ledger check, not a clean one (reconciliation_checks says so).
with

probes as (

    select * from {{ ref('stg_loyalty__capabilities') }}

),

covered as (

    select distinct tenant_id
    from probes
    where capability = 'ledger_feed'
        and offered

)

select * from covered
