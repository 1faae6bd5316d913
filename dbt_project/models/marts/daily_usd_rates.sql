{#- The loyalty-to-USD rates the bookings of each tenant and UTC day were converted at: the
    dashboard says which rates stand behind a USD total of any period (a tenant's rate can
    change, and each booking keeps the rate in force on its day). -#}

with

bookings as (

    select * from {{ ref('bookings') }}

),

final as (

    select
        tenant_id,
        cast({{ dbt.date_trunc('day', 'created_at') }} as date) as metric_date,
        max(loyalty_currency) as loyalty_currency,
        cast(count(*) as {{ dbt.type_int() }}) as converted_bookings,
        min(usd_per_unit) as min_usd_per_unit,
        max(usd_per_unit) as max_usd_per_unit

    from bookings
    group by 1, 2

)

select * from final
