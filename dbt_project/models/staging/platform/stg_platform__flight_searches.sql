-- Incremental, like the event feed: searches only grow and never change. A build takes
-- what landed since the last one (macros/incremental.sql); a second landing of a search
-- (a re-run that overlapped) is a copy and the first one landed is kept.
{{
    config(
        materialized='incremental',
        unique_key=['tenant_id', 'feed_id'],
    )
}}

with

source as (

    {{ landed_rows_since_last_build('platform', 'flight_searches') }}

),

renamed as (

    select
        cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
        cast(feed_id as bigint) as feed_id,
        cast(search_id as {{ dbt.type_string() }}) as search_id,
        cast(member_id as {{ dbt.type_string() }}) as member_id,
        cast(origin as {{ dbt.type_string() }}) as origin,
        cast(destination as {{ dbt.type_string() }}) as destination,
        cast(departure_date as date) as departure_date,
        cast(return_date as date) as return_date,
        cast(cabin_class as {{ dbt.type_string() }}) as cabin_class,
        cast(adults as integer) as adults,
        cast(children as integer) as children,
        cast(infants as integer) as infants,
        cast(result_count as integer) as result_count,
        cast(occurred_at as {{ utc_timestamp_type() }}) as occurred_at,
        cast(_loaded_at as {{ utc_timestamp_type() }}) as loaded_at,
        cast(_batch_id as {{ dbt.type_string() }}) as batch_id

    from source

),

candidates as (

    -- a search already built competes with a copy landed again
    {{ with_stored_versions('renamed', ['tenant_id', 'feed_id']) }}

),

copies as (

    select
        *,
        row_number() over (
            partition by tenant_id, feed_id
            order by loaded_at asc, batch_id asc
        ) as copy_rank

    from candidates

),

first_landed as (

    select
        tenant_id,
        feed_id,
        search_id,
        member_id,
        origin,
        destination,
        departure_date,
        return_date,
        cabin_class,
        adults,
        children,
        infants,
        result_count,
        occurred_at,
        loaded_at,
        batch_id,
        {{ build_started_at() }} as built_at

    from copies
    where copy_rank = 1

)

select * from first_landed
