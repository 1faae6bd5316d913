with

source as (

    select * from {{ landing_source('duffel', 'airports') }}

),

renamed as (

    select
        cast(airport_id as {{ dbt.type_string() }}) as airport_id,
        cast(iata_code as {{ dbt.type_string() }}) as iata_code,
        cast(icao_code as {{ dbt.type_string() }}) as icao_code,
        cast(name as {{ dbt.type_string() }}) as airport_name,
        cast(city_name as {{ dbt.type_string() }}) as city_name,
        cast(iata_city_code as {{ dbt.type_string() }}) as iata_city_code,
        cast(iata_country_code as {{ dbt.type_string() }}) as country_code,
        cast(latitude as {{ dbt.type_float() }}) as latitude,
        cast(longitude as {{ dbt.type_float() }}) as longitude,
        cast(time_zone as {{ dbt.type_string() }}) as time_zone,
        cast(_loaded_at as {{ utc_timestamp_type() }}) as loaded_at,
        cast(_batch_id as {{ dbt.type_string() }}) as batch_id

    from source

),

versions as (

    select
        *,
        row_number() over (
            partition by iata_code
            order by loaded_at desc, batch_id desc, airport_id asc
        ) as version_rank

    from renamed

),

latest as (

    select
        airport_id,
        iata_code,
        icao_code,
        airport_name,
        city_name,
        iata_city_code,
        country_code,
        latitude,
        longitude,
        time_zone,
        loaded_at

    from versions
    where version_rank = 1

)

select * from latest
