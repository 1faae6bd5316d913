with

source as (

    select * from {{ registry_file('capability_declarations') }}

),

renamed as (

    select
        tenant_id,
        capability,
        cast(declared as boolean) as declared,
        declared_as

    from source

)

select * from renamed
