-- Incremental, unlike the other staging models: the ledger is the largest feed, and
-- de-duplicating all of it on every build is most of a build's time. A build takes what
-- landed since the last one and keeps, per transaction, the latest of that and what the
-- table already holds (macros/incremental.sql).
{{
    config(
        materialized='incremental',
        unique_key=['tenant_id', 'transaction_id'],
    )
}}

with

source as (

    {{ landed_rows_since_last_build('loyalty', 'ledger_transactions') }}

),

renamed as (

    select
        cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
        cast(transaction_id as {{ dbt.type_string() }}) as transaction_id,
        cast(member_id as {{ dbt.type_string() }}) as member_id,
        cast(type as {{ dbt.type_string() }}) as transaction_type,
        cast(amount as {{ money_type() }}) as amount,
        cast(currency as {{ dbt.type_string() }}) as currency,
        cast(status as {{ dbt.type_string() }}) as status,
        cast(reference_id as {{ dbt.type_string() }}) as booking_id,
        cast(related_transaction_id as {{ dbt.type_string() }}) as related_transaction_id,
        cast(approval_id as {{ dbt.type_string() }}) as approval_id,
        cast(description as {{ dbt.type_string() }}) as description,
        cast(created_at as {{ utc_timestamp_type() }}) as created_at,
        cast(updated_at as {{ utc_timestamp_type() }}) as updated_at,
        cast(_loaded_at as {{ utc_timestamp_type() }}) as loaded_at,
        cast(_batch_id as {{ dbt.type_string() }}) as batch_id

    from source

),

candidates as (

    -- the versions already built for the same transactions compete with the new ones
    {{ with_stored_versions('renamed', ['tenant_id', 'transaction_id']) }}

),

versions as (

    select
        *,
        row_number() over (
            partition by tenant_id, transaction_id
            order by updated_at desc, loaded_at desc, batch_id desc
        ) as version_rank

    from candidates

),

latest as (

    select
        tenant_id,
        transaction_id,
        member_id,
        transaction_type,
        amount,
        currency,
        status,
        booking_id,
        related_transaction_id,
        approval_id,
        description,
        created_at,
        updated_at,
        loaded_at,
        batch_id,
        {{ build_started_at() }} as built_at

    from versions
    where version_rank = 1

)

select * from latest
