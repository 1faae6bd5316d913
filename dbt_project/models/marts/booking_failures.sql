{#- Why each failed booking failed, in the booking API's own words: the detail of the event
    that moved it to failed, and the step it failed from (charging, refunding, ...). -#}

with

events as (

    select * from {{ ref('stg_platform__booking_events') }}

),

into_failed as (

    select
        tenant_id,
        booking_id,
        from_state,
        detail,
        occurred_at,
        row_number() over (
            partition by tenant_id, booking_id
            order by occurred_at desc, event_id desc
        ) as recency

    from events
    where to_state = 'failed'

),

final as (

    select
        tenant_id,
        booking_id,
        from_state as failed_from,
        occurred_at as failed_at,
        coalesce(detail, 'no reason recorded') as reason

    from into_failed
    where recency = 1

)

select * from final
