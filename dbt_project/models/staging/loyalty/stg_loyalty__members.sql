with

source as (

    select * from {{ landing_source('loyalty', 'members') }}

),

renamed as (

    select
        cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
        cast(member_id as {{ dbt.type_string() }}) as member_id,
        cast(tier as {{ dbt.type_string() }}) as tier,
        cast(status as {{ dbt.type_string() }}) as member_status,
        cast(balance as {{ money_type() }}) as balance,
        cast(currency as {{ dbt.type_string() }}) as currency,
        cast(snapshot_at as {{ utc_timestamp_type() }}) as snapshot_at,
        cast(_loaded_at as {{ utc_timestamp_type() }}) as loaded_at,
        cast(_batch_id as {{ dbt.type_string() }}) as batch_id

    from source

),

snapshots as (

    select
        *,
        row_number() over (
            partition by tenant_id, member_id
            order by snapshot_at desc, loaded_at desc, batch_id desc
        ) as snapshot_rank

    from renamed

),

latest as (

    select
        tenant_id,
        member_id,
        tier,
        member_status,
        balance,
        currency,
        snapshot_at,
        loaded_at

    from snapshots
    where snapshot_rank = 1

)

select * from latest
