with

members as (

    select * from {{ ref('stg_loyalty__members') }}

),

loyalty_rates as (

    select * from {{ ref('stg_registry__loyalty_rates') }}

),

final as (

    select
        members.tenant_id,
        members.member_id,
        members.tier,
        members.member_status as status,
        members.balance,
        members.currency,
        loyalty_rates.usd_per_unit,
        {{ to_usd('members.balance', 'loyalty_rates.usd_per_unit') }} as balance_usd,
        members.snapshot_at

    from members
    left join loyalty_rates
        on members.tenant_id = loyalty_rates.tenant_id
        and cast(members.snapshot_at as date) >= loyalty_rates.valid_from
        and cast(members.snapshot_at as date) < coalesce(
            loyalty_rates.valid_to, cast('9999-12-31' as date)
        )

)

select * from final
