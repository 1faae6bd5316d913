{#- Every non-null `column_name` names a row of `to` with the same tenant_id: a per-tenant id
    never points into another tenant's data. -#}
{% test tenant_relationship(model, column_name, to, field) %}

-- `model` may arrive as a filtered subquery (an incremental build tests the rows it
-- rebuilt, macros/incremental.sql), so it is named in a CTE rather than aliased.
with

child as (

    select * from {{ model }}

)

select
    child.tenant_id,
    child.{{ column_name }}

from child
left join {{ to }} as parent
    on child.tenant_id = parent.tenant_id
    and child.{{ column_name }} = parent.{{ field }}
where child.{{ column_name }} is not null
    and parent.{{ field }} is null

{% endtest %}
