-- Incremental, like the orders it belongs to. The unique key is the order: a build replaces
-- all segments of every order that has a new version landed, so a segment an airline change
-- removed goes with the version it belonged to (macros/incremental.sql).
{{
    config(
        materialized='incremental',
        unique_key=['tenant_id', 'order_id'],
    )
}}

with

source as (

    {{ landed_rows_since_last_build('duffel', 'order_segments') }}

),

renamed as (

    select
        cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
        cast(order_id as {{ dbt.type_string() }}) as order_id,
        cast(slice_index as {{ dbt.type_int() }}) as slice_index,
        cast(segment_index as {{ dbt.type_int() }}) as segment_index,
        cast(segment_id as {{ dbt.type_string() }}) as segment_id,
        cast(origin as {{ dbt.type_string() }}) as origin,
        cast(destination as {{ dbt.type_string() }}) as destination,
        cast(departing_at as {{ utc_timestamp_type() }}) as departing_at,
        cast(arriving_at as {{ utc_timestamp_type() }}) as arriving_at,
        cast(marketing_carrier as {{ dbt.type_string() }}) as marketing_carrier,
        cast(flight_number as {{ dbt.type_string() }}) as flight_number,
        cast(duration_minutes as {{ dbt.type_int() }}) as duration_minutes,
        cast(version_at as {{ utc_timestamp_type() }}) as version_at,
        cast(_loaded_at as {{ utc_timestamp_type() }}) as loaded_at,
        cast(_batch_id as {{ dbt.type_string() }}) as batch_id

    from source

),

candidates as (

    -- the segments already built for the same orders compete with the new ones
    {{ with_stored_versions('renamed', ['tenant_id', 'order_id']) }}

),

versions as (

    -- Segments belong to an order version: keep only the order's latest version, so a
    -- segment an airline change removed does not linger.
    select
        *,
        max(version_at) over (partition by tenant_id, order_id) as order_version_at,
        row_number() over (
            partition by tenant_id, order_id, version_at, slice_index, segment_index
            order by loaded_at desc, batch_id desc
        ) as delivery_rank

    from candidates

),

latest as (

    select
        tenant_id,
        order_id,
        slice_index,
        segment_index,
        segment_id,
        origin,
        destination,
        departing_at,
        arriving_at,
        marketing_carrier,
        flight_number,
        duration_minutes,
        version_at,
        loaded_at,
        batch_id,
        {{ build_started_at() }} as built_at

    from versions
    where version_at = order_version_at
        and delivery_rank = 1

)

select * from latest
