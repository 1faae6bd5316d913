with

source as (

    select * from {{ registry_file('loyalty_rates') }}

),

renamed as (

    select
        tenant_id,
        currency,
        cast(usd_per_unit as decimal(18, 8)) as usd_per_unit,
        cast(valid_from as date) as valid_from,
        cast(valid_to as date) as valid_to

    from source

)

select * from renamed
