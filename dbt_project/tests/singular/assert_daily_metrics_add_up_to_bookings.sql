-- Per tenant, the daily metrics add up to the bookings mart: no booking lost or counted twice.
with

from_bookings as (

    select
        tenant_id,
        count(*) as bookings,
        sum(usd_amount) as usd_volume,
        sum(refund_usd) as refunds_usd,
        sum(cashback_usd) as cashback_usd

    from {{ ref('bookings') }}
    group by tenant_id

),

from_metrics as (

    select
        tenant_id,
        sum(bookings) as bookings,
        sum(usd_volume) as usd_volume,
        sum(refunds_usd) as refunds_usd,
        sum(cashback_usd) as cashback_usd

    from {{ ref('daily_tenant_metrics') }}
    group by tenant_id

)

select
    coalesce(from_bookings.tenant_id, from_metrics.tenant_id) as tenant_id

from from_bookings
full outer join from_metrics
    on from_bookings.tenant_id = from_metrics.tenant_id
where from_bookings.bookings is distinct from from_metrics.bookings
    or from_bookings.usd_volume is distinct from from_metrics.usd_volume
    or from_bookings.refunds_usd is distinct from from_metrics.refunds_usd
    or from_bookings.cashback_usd is distinct from from_metrics.cashback_usd
