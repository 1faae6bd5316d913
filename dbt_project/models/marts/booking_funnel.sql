{#- The booking funnel per tenant and UTC day: searches, the members who searched, the
    bookings created that day and how many of them reached confirmed, and the searches that
    led nowhere (by a member who made no booking in that tenant that day). Searches come from
    the booking API's searches feed, bookings from its event feed as folded per booking (and
    kept incrementally) by `int_booking_events_pivoted_to_bookings`: a booking is created by
    its first event, and counts as confirmed once any of its events reached `confirmed`
    (whatever came after, e.g. a cancellation). A day with searches or bookings has a row. -#}

with

searches as (

    select
        tenant_id,
        member_id,
        cast({{ dbt.date_trunc('day', 'occurred_at') }} as date) as funnel_day

    from {{ ref('stg_platform__flight_searches') }}

),

created as (

    select
        tenant_id,
        booking_id,
        member_id,
        reached_confirmed,
        cast({{ dbt.date_trunc('day', 'created_at') }} as date) as funnel_day

    from {{ ref('int_booking_events_pivoted_to_bookings') }}

),

booking_days as (

    select
        tenant_id,
        funnel_day,
        count(*) as bookings,
        count(case when reached_confirmed then 1 end) as confirmed

    from created
    group by tenant_id, funnel_day

),

booking_members as (

    select distinct
        tenant_id,
        funnel_day,
        member_id

    from created

),

search_days as (

    select
        searches.tenant_id,
        searches.funnel_day,
        count(*) as searches,
        count(distinct searches.member_id) as searching_members,
        sum(case when booking_members.member_id is null then 1 else 0 end) as abandoned_searches

    from searches
    left join booking_members
        on
        searches.tenant_id = booking_members.tenant_id
        and searches.funnel_day = booking_members.funnel_day
        and searches.member_id = booking_members.member_id
    group by searches.tenant_id, searches.funnel_day

),

funnel_days as (

    select
        tenant_id,
        funnel_day
    from search_days
    union
    select
        tenant_id,
        funnel_day
    from booking_days

),

final as (

    select
        funnel_days.tenant_id,
        -- `day` is the column name the dashboard reads (the agreed contract)
        funnel_days.funnel_day as day,  -- noqa: RF04
        cast(coalesce(search_days.searches, 0) as bigint) as searches,
        cast(coalesce(search_days.searching_members, 0) as bigint) as searching_members,
        cast(coalesce(booking_days.bookings, 0) as bigint) as bookings,
        cast(coalesce(booking_days.confirmed, 0) as bigint) as confirmed,
        cast(coalesce(search_days.abandoned_searches, 0) as bigint) as abandoned_searches

    from funnel_days
    left join search_days
        on
        funnel_days.tenant_id = search_days.tenant_id
        and funnel_days.funnel_day = search_days.funnel_day
    left join booking_days
        on
        funnel_days.tenant_id = booking_days.tenant_id
        and funnel_days.funnel_day = booking_days.funnel_day

)

select * from final
