with

bookings as (

    select * from {{ ref('bookings') }}

),

booking_days as (

    select
        tenant_id,
        cast({{ dbt.date_trunc('day', 'created_at') }} as date) as metric_date,
        max(loyalty_currency) as loyalty_currency,
        count(*) as bookings,
        sum(case when status = 'confirmed' then 1 else 0 end) as confirmed_bookings,
        sum(case when status = 'pending_approval' then 1 else 0 end) as pending_approval_bookings,
        sum(case when status = 'rejected' then 1 else 0 end) as rejected_bookings,
        sum(case when status = 'cancelled' then 1 else 0 end) as cancelled_bookings,
        sum(case when status = 'failed' then 1 else 0 end) as failed_bookings,
        sum(loyalty_amount) as loyalty_volume,
        sum(usd_amount) as usd_volume,
        sum(cashback_usd) as cashback_usd

    from bookings
    group by 1, 2

),

refund_days as (

    -- refunds count on the day they were posted, which is rarely the booking's day
    select
        tenant_id,
        cast({{ dbt.date_trunc('day', 'refunded_at') }} as date) as metric_date,
        max(loyalty_currency) as loyalty_currency,
        sum(refund_amount) as refund_volume,
        sum(refund_usd) as refunds_usd

    from bookings
    where refunded_at is not null
    group by 1, 2

),

joined as (

    select
        coalesce(booking_days.tenant_id, refund_days.tenant_id) as tenant_id,
        coalesce(booking_days.metric_date, refund_days.metric_date) as metric_date,
        coalesce(booking_days.loyalty_currency, refund_days.loyalty_currency) as loyalty_currency,
        coalesce(booking_days.bookings, 0) as bookings,
        coalesce(booking_days.confirmed_bookings, 0) as confirmed_bookings,
        coalesce(booking_days.pending_approval_bookings, 0) as pending_approval_bookings,
        coalesce(booking_days.rejected_bookings, 0) as rejected_bookings,
        coalesce(booking_days.cancelled_bookings, 0) as cancelled_bookings,
        coalesce(booking_days.failed_bookings, 0) as failed_bookings,
        coalesce(booking_days.loyalty_volume, 0) as loyalty_volume,
        coalesce(booking_days.usd_volume, 0) as usd_volume,
        coalesce(refund_days.refund_volume, 0) as refund_volume,
        coalesce(refund_days.refunds_usd, 0) as refunds_usd,
        coalesce(booking_days.cashback_usd, 0) as cashback_usd

    from booking_days
    full outer join refund_days
        on booking_days.tenant_id = refund_days.tenant_id
        and booking_days.metric_date = refund_days.metric_date

),

final as (

    select
        tenant_id,
        metric_date,
        loyalty_currency,
        cast(bookings as {{ dbt.type_int() }}) as bookings,
        cast(confirmed_bookings as {{ dbt.type_int() }}) as confirmed_bookings,
        cast(pending_approval_bookings as {{ dbt.type_int() }}) as pending_approval_bookings,
        cast(rejected_bookings as {{ dbt.type_int() }}) as rejected_bookings,
        cast(cancelled_bookings as {{ dbt.type_int() }}) as cancelled_bookings,
        cast(failed_bookings as {{ dbt.type_int() }}) as failed_bookings,
        cast(loyalty_volume as {{ money_type() }}) as loyalty_volume,
        cast(usd_volume as {{ money_type() }}) as usd_volume,
        cast(refund_volume as {{ money_type() }}) as refund_volume,
        cast(refunds_usd as {{ money_type() }}) as refunds_usd,
        cast(cashback_usd as {{ money_type() }}) as cashback_usd,
        cast(usd_volume - refunds_usd - cashback_usd as {{ money_type() }}) as net_usd

    from joined

)

select * from final
