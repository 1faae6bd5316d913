-- One row per booking the booking API made (tenant_id, booking_id), folded from its events.
-- Every event carries the booking as it stood after that step, so its latest event (by event
-- id, the commit order) gives its status, amounts, rate and recorded ids; a note's to_state
-- is the state it left unchanged. Its first event says when it was made, the event that
-- took it out of pending_approval how its approval was decided.
-- Incremental: a build re-folds only the bookings with an event built since the last one,
-- from all of their events (macros/incremental.sql).
{{
    config(
        materialized='incremental',
        unique_key=['tenant_id', 'booking_id'],
    )
}}

with

{% if is_incremental() %}
-- Each relation is read directly rather than through a shared CTE, which DuckDB would
-- materialize in full; here the filters reach the table scans.
changed_bookings as (

    select distinct tenant_id, booking_id
    from {{ ref('stg_platform__booking_events') }}
    where {{ built_since_last_build() }}

),

events as (

    select booking_events.*
    from {{ ref('stg_platform__booking_events') }} as booking_events
    inner join changed_bookings
        on booking_events.tenant_id = changed_bookings.tenant_id
        and booking_events.booking_id = changed_bookings.booking_id

),
{% else %}
events as (

    select * from {{ ref('stg_platform__booking_events') }}

),
{% endif %}

ranked as (

    select
        *,
        row_number() over (
            partition by tenant_id, booking_id
            order by event_id desc
        ) as recency_rank

    from events

),

latest as (

    select * from ranked
    where recency_rank = 1

),

milestones as (

    select
        tenant_id,
        booking_id,
        min(event_id) as first_event_id,
        min(case when event_type = 'booking.pending_approval' then event_id end)
            as approval_request_event_id,
        -- the step out of pending_approval: approved (charging, or failed because the offer
        -- expired meanwhile), rejected, or withdrawn by the member (cancelled)
        min(
            case
                when from_state = 'pending_approval' and to_state <> 'pending_approval'
                    then event_id
            end
        ) as approval_decision_event_id,
        -- by event id, not by clock: the first event that carried each
        min(case when loyalty_transaction_id is not null then event_id end) as charge_event_id,
        min(case when refund_transaction_id is not null then event_id end) as refund_event_id,
        min(case when event_type = 'booking.cancelling' then event_id end)
            as cancelling_event_id,
        -- the latest step into the state it is in now (a note's type is not booking.<its
        -- to_state>, so a note does not restart the wait)
        max(case when event_type = 'booking.' || to_state then event_id end)
            as status_event_id,
        -- reached confirmed at some point, whatever came after (e.g. a cancellation)
        count(case when to_state = 'confirmed' then 1 end) > 0 as reached_confirmed,
        count(*) as event_count,
        max(loaded_at) as loaded_at

    from events
    group by tenant_id, booking_id

),

folded as (

    select
        latest.tenant_id,
        latest.booking_id,
        latest.member_id,
        latest.to_state as status,
        entered.occurred_at as status_since,
        milestones.reached_confirmed,
        first_event.occurred_at as created_at,
        latest.occurred_at as last_event_at,
        latest.loyalty_amount,
        latest.loyalty_currency,
        latest.cashback_amount,
        latest.refund_amount,
        latest.usd_amount,
        latest.usd_per_unit,
        latest.fare_amount,
        latest.fare_currency,
        latest.fx_rate,
        latest.loyalty_transaction_id,
        latest.refund_transaction_id,
        latest.duffel_order_id,
        charge.occurred_at as charged_at,
        refund.occurred_at as refunded_at,
        cancelling.occurred_at as cancelling_at,
        request.occurred_at as approval_requested_at,
        request.loyalty_amount as approval_loyalty_amount,
        request.usd_amount as approval_usd_amount,
        decision.occurred_at as approval_decided_at,
        decision.actor as approval_decided_by,
        milestones.event_count,
        milestones.loaded_at,
        case
            when decision.to_state in ('charging', 'failed') then 'approved'
            when decision.to_state = 'rejected' then 'rejected'
        end as approval_decision

    from latest
    inner join milestones
        on latest.tenant_id = milestones.tenant_id
        and latest.booking_id = milestones.booking_id
    inner join events as first_event
        on milestones.tenant_id = first_event.tenant_id
        and milestones.first_event_id = first_event.event_id
    left join events as request
        on milestones.tenant_id = request.tenant_id
        and milestones.approval_request_event_id = request.event_id
    left join events as decision
        on milestones.tenant_id = decision.tenant_id
        and milestones.approval_decision_event_id = decision.event_id
    left join events as charge
        on milestones.tenant_id = charge.tenant_id
        and milestones.charge_event_id = charge.event_id
    left join events as refund
        on milestones.tenant_id = refund.tenant_id
        and milestones.refund_event_id = refund.event_id
    left join events as cancelling
        on milestones.tenant_id = cancelling.tenant_id
        and milestones.cancelling_event_id = cancelling.event_id
    left join events as entered
        on milestones.tenant_id = entered.tenant_id
        and milestones.status_event_id = entered.event_id

),

final as (

    select
        *,
        {{ build_started_at() }} as built_at

    from folded

)

select * from final
