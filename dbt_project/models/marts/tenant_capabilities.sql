-- What each tenant's API offers, as found: every capability of every tenant, whether its
-- file declares it, and the latest probe's answer (null while never probed).

with

declarations as (

    select * from {{ ref('stg_registry__capability_declarations') }}

),

probes as (

    select * from {{ ref('stg_loyalty__capabilities') }}

),

final as (

    select
        declarations.tenant_id,
        declarations.capability,
        declarations.declared,
        probes.offered,
        probes.checked_at,
        coalesce(
            probes.detail,
            case
                when declarations.declared then 'declared in the tenant file; not probed yet'
                else 'not declared in the tenant file; never asked for'
            end
        ) as detail

    from declarations
    left join probes
        on declarations.tenant_id = probes.tenant_id
        and declarations.capability = probes.capability

)

select * from final
