{#- Bookings whose saga waits on someone: a refund still owed (refund_pending) or an outcome
    only the tenant's ledger, Duffel or an operator can settle (needs_reconciliation). A
    booking's status is the to_state of its latest event, and it waits since the step that
    entered that status (notes leave both as they were): both folded per booking, and kept
    incrementally, by `int_booking_events_pivoted_to_bookings`, so this counts bookings, not
    events. -#}

with

bookings as (

    select * from {{ ref('int_booking_events_pivoted_to_bookings') }}

),

registry as (

    select tenant_id from {{ ref('stg_registry__tenants') }}

),

watched_statuses as (

    select 'needs_reconciliation' as status
    union all
    select 'refund_pending' as status

),

waiting as (

    select
        bookings.tenant_id,
        bookings.status,
        count(*) as bookings,
        min(bookings.status_since) as oldest_since

    from bookings
    inner join watched_statuses
        on bookings.status = watched_statuses.status
    group by bookings.tenant_id, bookings.status

),

-- Every registered tenant gets both rows, zero included; a tenant seen only in the events
-- still shows (and fails the relationship test to the registry).
tenants as (

    select tenant_id from registry
    union
    select distinct tenant_id from bookings

),

final as (

    select
        tenants.tenant_id,
        watched_statuses.status,
        coalesce(waiting.bookings, 0) as bookings,
        waiting.oldest_since,
        -- whole hours elapsed by the start of this build
        {{ integer_divide(seconds_between('waiting.oldest_since', build_started_at()), '3600') }}
            as oldest_age_hours

    from tenants
    cross join watched_statuses
    left join waiting
        on tenants.tenant_id = waiting.tenant_id
        and watched_statuses.status = waiting.status

)

select * from final
