-- Incremental, like the ledger's staging model: a build takes the order versions landed
-- since the last one and keeps, per order, the latest of those and the one already built
-- (macros/incremental.sql).
{{
    config(
        materialized='incremental',
        unique_key=['tenant_id', 'order_id'],
    )
}}

with

source as (

    {{ landed_rows_since_last_build('duffel', 'orders') }}

),

renamed as (

    select
        cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
        cast(order_id as {{ dbt.type_string() }}) as order_id,
        cast(booking_reference as {{ dbt.type_string() }}) as pnr,
        cast(order_type as {{ dbt.type_string() }}) as order_type,
        cast(created_at as {{ utc_timestamp_type() }}) as created_at,
        cast(owner_iata as {{ dbt.type_string() }}) as airline_iata,
        cast(owner_name as {{ dbt.type_string() }}) as airline_name,
        cast(cabin_class as {{ dbt.type_string() }}) as cabin,
        cast(passenger_count as {{ dbt.type_int() }}) as passenger_count,
        cast(slice_count as {{ dbt.type_int() }}) as slice_count,
        cast(segment_count as {{ dbt.type_int() }}) as segment_count,
        cast(origin as {{ dbt.type_string() }}) as origin,
        cast(destination as {{ dbt.type_string() }}) as destination,
        cast(departing_at as {{ utc_timestamp_type() }}) as departing_at,
        cast(total_amount as {{ money_type() }}) as total_amount,
        cast(base_amount as {{ money_type() }}) as base_amount,
        cast(tax_amount as {{ money_type() }}) as tax_amount,
        cast(total_currency as {{ dbt.type_string() }}) as total_currency,
        cast(awaiting_payment as {{ dbt.type_boolean() }}) as is_awaiting_payment,
        cast(paid_at as {{ utc_timestamp_type() }}) as paid_at,
        cast(payment_required_by as {{ utc_timestamp_type() }}) as payment_required_by,
        cast(cancelled_at as {{ utc_timestamp_type() }}) as cancelled_at,
        cast(cancellation_id as {{ dbt.type_string() }}) as cancellation_id,
        cast(refund_amount as {{ money_type() }}) as refund_amount,
        cast(refund_currency as {{ dbt.type_string() }}) as refund_currency,
        cast(refund_to as {{ dbt.type_string() }}) as refund_to,
        cast(meta_tenant_id as {{ dbt.type_string() }}) as metadata_tenant_id,
        cast(meta_member_id as {{ dbt.type_string() }}) as member_id,
        cast(meta_booking_id as {{ dbt.type_string() }}) as booking_id,
        cast(meta_loyalty_transaction_id as {{ dbt.type_string() }}) as loyalty_transaction_id,
        cast(version_at as {{ utc_timestamp_type() }}) as version_at,
        cast(_loaded_at as {{ utc_timestamp_type() }}) as loaded_at,
        cast(_batch_id as {{ dbt.type_string() }}) as batch_id

    from source

),

candidates as (

    -- the version already built of each order competes with the new ones
    {{ with_stored_versions('renamed', ['tenant_id', 'order_id']) }}

),

versions as (

    select
        *,
        row_number() over (
            partition by tenant_id, order_id
            order by version_at desc, loaded_at desc, batch_id desc
        ) as version_rank

    from candidates

),

latest as (

    select
        tenant_id,
        order_id,
        pnr,
        order_type,
        created_at,
        airline_iata,
        airline_name,
        cabin,
        passenger_count,
        slice_count,
        segment_count,
        origin,
        destination,
        departing_at,
        total_amount,
        base_amount,
        tax_amount,
        total_currency,
        is_awaiting_payment,
        paid_at,
        payment_required_by,
        cancelled_at,
        cancellation_id,
        refund_amount,
        refund_currency,
        refund_to,
        metadata_tenant_id,
        member_id,
        booking_id,
        loyalty_transaction_id,
        version_at,
        loaded_at,
        batch_id,
        {{ build_started_at() }} as built_at

    from versions
    where version_rank = 1

)

select * from latest
