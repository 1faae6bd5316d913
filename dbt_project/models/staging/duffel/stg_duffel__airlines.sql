with

source as (

    select * from {{ landing_source('duffel', 'airlines') }}

),

renamed as (

    select
        cast(airline_id as {{ dbt.type_string() }}) as airline_id,
        cast(iata_code as {{ dbt.type_string() }}) as iata_code,
        cast(name as {{ dbt.type_string() }}) as airline_name,
        cast(_loaded_at as {{ utc_timestamp_type() }}) as loaded_at,
        cast(_batch_id as {{ dbt.type_string() }}) as batch_id

    from source

),

versions as (

    select
        *,
        row_number() over (
            partition by iata_code
            order by loaded_at desc, batch_id desc, airline_id asc
        ) as version_rank

    from renamed

),

latest as (

    select
        airline_id,
        iata_code,
        airline_name,
        loaded_at

    from versions
    where version_rank = 1

)

select * from latest
