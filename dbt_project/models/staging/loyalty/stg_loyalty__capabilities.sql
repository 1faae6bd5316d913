with

source as (

    select * from {{ landing_source('loyalty', 'capabilities') }}

),

renamed as (

    select
        cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
        cast(capability as {{ dbt.type_string() }}) as capability,
        cast(offered as {{ dbt.type_boolean() }}) as offered,
        cast(status_code as {{ dbt.type_int() }}) as status_code,
        cast(detail as {{ dbt.type_string() }}) as detail,
        cast(checked_at as {{ utc_timestamp_type() }}) as checked_at,
        cast(_loaded_at as {{ utc_timestamp_type() }}) as loaded_at,
        cast(_batch_id as {{ dbt.type_string() }}) as batch_id

    from source

),

-- Each probe is a fact of its moment; the latest answer is what the API offers now.
probes as (

    select
        *,
        row_number() over (
            partition by tenant_id, capability
            order by checked_at desc, loaded_at desc, batch_id desc
        ) as probe_rank

    from renamed

),

latest as (

    select
        tenant_id,
        capability,
        offered,
        status_code,
        detail,
        checked_at,
        loaded_at

    from probes
    where probe_rank = 1

)

select * from latest
