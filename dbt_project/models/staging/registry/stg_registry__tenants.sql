with

source as (

    select * from {{ registry_file('tenants') }}

),

renamed as (

    select
        tenant_id,
        name,
        currency,
        cast(usd_per_unit as decimal(18, 8)) as usd_per_unit,
        cast(currency_decimals as integer) as currency_decimals,
        cast(approval_threshold as bigint) as approval_threshold,
        cast(cashback_rate as decimal(18, 8)) as cashback_rate,
        allowed_cabins,
        cast(has_ledger_feed as boolean) as has_ledger_feed,
        cast(has_member_list as boolean) as has_member_list,
        cast(has_refunds as boolean) as has_refunds

    from source

)

select * from renamed
