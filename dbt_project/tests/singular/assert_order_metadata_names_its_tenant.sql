-- An order found in one tenant's Duffel organisation never names another tenant: a booking
-- can never be attributed across tenants.
select
    tenant_id,
    order_id,
    metadata_tenant_id

from {{ ref('stg_duffel__orders') }}
where metadata_tenant_id is not null
    and metadata_tenant_id <> tenant_id
