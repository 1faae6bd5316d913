{{ config(alias='tenants') }}
{#- Built as `tenants` in the warehouse; the dbt name differs only because the registry seed
    it reads is already called `tenants`. -#}

with

tenants as (

    select * from {{ ref('tenants') }}

),

final as (

    select
        tenant_id,
        name as tenant_name,
        currency,
        usd_per_unit,
        currency_decimals,
        approval_threshold,
        cashback_rate,
        allowed_cabins,
        has_ledger_feed,
        has_member_list,
        has_refunds

    from tenants

)

select * from final
