{#
    Data tests of an incremental model check the rows this build (re)built: every row was
    checked by the build that wrote it, and a row a build does not touch cannot change. On
    a full build every row is rebuilt, so every row is checked. Relationship tests still
    look up their parents in the whole table. A test's own `where` config wins.
    (Overrides dbt's default__get_where_subquery, which generic tests call on their model.)
#}
{#- Self-contained: dbt renders it while parsing tests, where the project's other macros
    are not in scope (so the instant type of utc_timestamp_type is spelled out here). -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set scope = namespace(where=config.get('where', '')) -%}
    {%- if not scope.where and execute and relation.identifier is not none -%}
        {%- for node in graph.nodes.values() -%}
            {%- if node.resource_type == 'model'
                and node.config.materialized == 'incremental'
                and (node.alias or node.name) | lower == relation.identifier | lower
                and node.schema | lower == relation.schema | lower -%}
                {#- the built_at this invocation stamps (build_started_at) -#}
                {%- set instant = 'timestamp' if target.type == 'spark' else 'timestamp with time zone' -%}
                {%- set scope.where = "built_at = cast('" ~ run_started_at.isoformat()
                    ~ "' as " ~ instant ~ ")" -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if scope.where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ scope.where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
