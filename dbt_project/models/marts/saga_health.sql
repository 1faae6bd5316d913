{#- Bookings whose saga waits on someone: a refund still owed (refund_pending) or an outcome
    only the tenant's ledger, Duffel or an operator can settle (needs_reconciliation). A
    booking's status is the to_state of its latest event; notes leave it as it was. -#}

with

events as (

    select * from {{ ref('stg_platform__booking_events') }}

),

registry as (

    select tenant_id from {{ ref('stg_registry__tenants') }}

),

watched_statuses as (

    select unnest(['needs_reconciliation', 'refund_pending']) as status

),

by_recency as (

    select
        tenant_id,
        booking_id,
        to_state,
        row_number() over (
            partition by tenant_id, booking_id
            order by event_id desc
        ) as recency_rank

    from events

),

current_status as (

    select
        tenant_id,
        booking_id,
        to_state as status

    from by_recency
    where recency_rank = 1

),

-- A booking entered its current status with its latest state change: a note's type is not
-- booking.<its to_state>, and the event ids give the order.
transitions as (

    select
        tenant_id,
        booking_id,
        occurred_at,
        row_number() over (
            partition by tenant_id, booking_id
            order by event_id desc
        ) as recency_rank

    from events
    where event_type = 'booking.' || to_state

),

waiting as (

    select
        current_status.tenant_id,
        current_status.status,
        count(*) as bookings,
        min(transitions.occurred_at) as oldest_since

    from current_status
    inner join watched_statuses
        on current_status.status = watched_statuses.status
    left join transitions
        on current_status.tenant_id = transitions.tenant_id
        and current_status.booking_id = transitions.booking_id
        and transitions.recency_rank = 1
    group by current_status.tenant_id, current_status.status

),

-- Every registered tenant gets both rows, zero included; a tenant seen only in the events
-- still shows (and fails the relationship test to the registry).
tenants as (

    select tenant_id from registry
    union
    select distinct tenant_id from events

),

final as (

    select
        tenants.tenant_id,
        watched_statuses.status,
        coalesce(waiting.bookings, 0) as bookings,
        waiting.oldest_since,
        -- whole hours elapsed by the start of this build
        date_diff('second', waiting.oldest_since, {{ build_started_at() }}) // 3600
            as oldest_age_hours

    from tenants
    cross join watched_statuses
    left join waiting
        on tenants.tenant_id = waiting.tenant_id
        and watched_statuses.status = waiting.status

)

select * from final
