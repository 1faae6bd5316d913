-- Which checks each tenant's data allows, and why not where it does not: the ledger is
-- compared with the platform only where the tenant offers its ledger feed; the member
-- liability comes from the member list or, without one, from balance lookups.

with

tenants as (

    select tenant_id from {{ ref('stg_registry__tenants') }}

),

capabilities as (

    select * from {{ ref('tenant_capabilities') }}

),

ledger_feed as (

    select * from capabilities
    where capability = 'ledger_feed'

),

member_list as (

    select * from capabilities
    where capability = 'member_list'

),

looked_up as (

    select
        tenant_id,
        count(*) as members

    from {{ ref('stg_loyalty__members') }}
    where snapshot_source = 'balance_lookup'
    group by tenant_id

),

ledger_check as (

    select
        tenants.tenant_id,
        'ledger_vs_platform' as check_name,
        coalesce(ledger_feed.offered, false) as available,
        case
            when ledger_feed.offered then 'the tenant offers its ledger feed'
            when ledger_feed.offered is null then 'no ledger feed: ' || ledger_feed.detail
            else 'the tenant offers no ledger feed: ' || ledger_feed.detail
        end as reason

    from tenants
    left join ledger_feed
        on tenants.tenant_id = ledger_feed.tenant_id

),

duffel_check as (

    select
        tenant_id,
        'duffel_vs_platform' as check_name,
        true as available,
        {{ text_literal("Duffel orders are read with the tenant's own Duffel token") }} as reason

    from tenants

),

liability_check as (

    select
        tenants.tenant_id,
        'member_liability' as check_name,
        coalesce(member_list.offered, false) or coalesce(looked_up.members, 0) > 0 as available,
        case
            when member_list.offered then 'from the member list'
            else
                'from balance lookups of '
                || cast(coalesce(looked_up.members, 0) as {{ dbt.type_string() }})
                || ' members the platform knows'
        end as reason

    from tenants
    left join member_list
        on tenants.tenant_id = member_list.tenant_id
    left join looked_up
        on tenants.tenant_id = looked_up.tenant_id

),

final as (

    select * from ledger_check
    union all
    select * from duffel_check
    union all
    select * from liability_check

)

select
    cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
    cast(check_name as {{ dbt.type_string() }}) as check_name,
    cast(available as {{ dbt.type_boolean() }}) as available,
    cast(reason as {{ dbt.type_string() }}) as reason

from final
