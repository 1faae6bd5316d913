{{ config(alias='tenants') }}
{#- Built as `tenants` in the warehouse; its dbt name (and Dagster asset key) is
    tenant_profiles. -#}

with

tenants as (

    select * from {{ ref('stg_registry__tenants') }}

),

-- What the tenant's API was found to offer, not what its file hopes: false when the file
-- does not declare it (never used), null while a declared one has never been probed.
found as (

    select
        tenant_id,
        capability,
        case when declared then cast(offered as integer) else 0 end as offered

    from {{ ref('tenant_capabilities') }}

),

capabilities as (

    select
        tenant_id,
        max(case when capability = 'ledger_feed' then offered end) as ledger_feed,
        max(case when capability = 'member_list' then offered end) as member_list,
        max(case when capability = 'refunds' then offered end) as refunds

    from found
    group by tenant_id

),

final as (

    select
        tenants.tenant_id,
        tenants.name as tenant_name,
        tenants.currency,
        tenants.usd_per_unit,
        tenants.currency_decimals,
        tenants.approval_threshold,
        tenants.cashback_rate,
        tenants.allowed_cabins,
        cast(capabilities.ledger_feed as {{ dbt.type_boolean() }}) as has_ledger_feed,
        cast(capabilities.member_list as {{ dbt.type_boolean() }}) as has_member_list,
        cast(capabilities.refunds as {{ dbt.type_boolean() }}) as has_refunds

    from tenants
    left join capabilities
        on tenants.tenant_id = capabilities.tenant_id

)

select * from final
