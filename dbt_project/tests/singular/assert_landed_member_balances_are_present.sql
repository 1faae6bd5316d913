-- Landed member rows without a balance (from before ingestion quarantined such balances):
-- staging skips them, so this warns rather than failing every tenant's publish.
{{ config(severity='warn') }}

select
    tenant_id,
    member_id,
    snapshot_at,
    _batch_id as batch_id

from {{ landing_source('loyalty', 'members') }}
where balance is null
