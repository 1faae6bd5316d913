-- One row per booking that needed an operator's approval (tenant_id, booking_id): when it
-- was asked for, how and when it was decided, and how long it waited. The amounts are the
-- ones the approval was asked for (an approval re-prices the booking before charging it).
with

platform_bookings as (

    select * from {{ ref('int_booking_events_pivoted_to_bookings') }}
    where approval_requested_at is not null

),

final as (

    select
        tenant_id,
        booking_id,
        member_id,
        approval_requested_at as requested_at,
        approval_decided_at as decided_at,
        approval_decision as decision,
        approval_decided_by as decided_by,
        approval_loyalty_amount as loyalty_amount,
        loyalty_currency,
        approval_usd_amount as usd_amount,
        -- until decided, the wait so far (by the start of this build)
        cast(
            {{ seconds_between(
                'approval_requested_at',
                'coalesce(approval_decided_at, ' ~ build_started_at() ~ ')'
            ) }} as bigint
        ) as wait_seconds

    from platform_bookings

)

select * from final
