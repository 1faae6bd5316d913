with

source as (

    select * from {{ registry_file('booking_statuses') }}

)

select status from source
