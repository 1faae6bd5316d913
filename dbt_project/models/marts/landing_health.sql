-- What landed when and what quarantine still holds open, per tenant and landed entity: the
-- dashboard's data-health page. Counts every landed row version and every open quarantine
-- entry (one without a resolution beside it), so it reads the sources, not staging, which
-- keeps only the latest version of each record.
{%- set entities = [
    ('loyalty', 'ledger_transactions'),
    ('loyalty', 'members'),
    ('duffel', 'orders'),
] %}

with

{% for source_name, entity in entities %}
{%- set quarantine = source_name ~ '__' ~ entity %}
{{ source_name }}__{{ entity }}__landed as (

    select
        tenant_id,
        count(*) as rows_landed,
        max(_loaded_at) as last_loaded_at

    from {{ landing_source(source_name, entity) }}
    group by tenant_id

),

{{ quarantine }}__rejected as (

    select * from {{ landing_source('quarantine', quarantine) }}

),

{{ quarantine }}__resolved as (

    select * from {{ landing_source('quarantine', quarantine ~ '__resolved') }}

),

-- An entry (batch, record key, payload) stays open until a resolution names it.
{{ quarantine }}__open as (

    select
        rejected.tenant_id,
        count(*) as quarantined,
        max(rejected._loaded_at) as last_quarantined_at

    from {{ quarantine }}__rejected as rejected
    left join {{ quarantine }}__resolved as resolved
        on
        rejected.tenant_id = resolved.tenant_id
        and rejected._batch_id = resolved._batch_id
        and rejected.record_key is not distinct from resolved.record_key
        and left({{ sha256_hex("rejected.raw_payload") }}, 24) = resolved.payload_digest
    where resolved._batch_id is null
    group by rejected.tenant_id

),

{{ quarantine }} as (

    select
        coalesce(landed.tenant_id, held.tenant_id) as tenant_id,
        '{{ source_name }}' as source,  -- noqa: RF04
        '{{ entity }}' as entity,
        coalesce(landed.rows_landed, 0) as rows_landed,
        landed.last_loaded_at,
        coalesce(held.quarantined, 0) as quarantined,
        held.last_quarantined_at

    from {{ quarantine }}__landed as landed
    full outer join {{ quarantine }}__open as held
        on landed.tenant_id = held.tenant_id

),

{% endfor %}
final as (

    {% for source_name, entity in entities %}
    select * from {{ source_name }}__{{ entity }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select * from final
