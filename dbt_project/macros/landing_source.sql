{#
    The relation a staging model reads for one landed entity.

    On DuckDB a source is `read_parquet(<glob>)` over the landing zone (its `landing_files`
    meta), and read_parquet fails when no file matches: on a first run, or when no tenant
    has that feed yet. Then this returns an empty relation typed from the source's YAML
    columns, so `dbt build` still succeeds and the entity simply has no rows. Elsewhere a
    source is a loaded table and is returned as it is.
#}
{% macro landing_source(source_name, table_name) -%}
    {{ return(adapter.dispatch('landing_source')(source_name, table_name)) }}
{%- endmacro %}

{% macro default__landing_source(source_name, table_name) -%}
    {{ return(source(source_name, table_name)) }}
{%- endmacro %}

{% macro duckdb__landing_source(source_name, table_name) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- if not execute -%}
        {{ return(relation) }}
    {%- endif -%}
    {%- set node = graph.sources.values()
        | selectattr('source_name', 'equalto', source_name)
        | selectattr('name', 'equalto', table_name)
        | first -%}
    {%- set files = node.config.meta.landing_files -%}
    {%- set found = run_query("select count(*) from glob('" ~ files ~ "')").columns[0].values()[0] -%}
    {%- if found > 0 -%}
        {{ return(relation) }}
    {%- endif -%}
    {{ log("no landed files match " ~ files ~ "; " ~ source_name ~ "." ~ table_name ~ " is empty", info=true) }}
    {%- set typed_nulls = [] -%}
    {%- for column in node.columns.values() -%}
        {%- do typed_nulls.append("cast(null as " ~ column.data_type ~ ") as " ~ adapter.quote(column.name)) -%}
    {%- endfor -%}
    {{ return("(select " ~ typed_nulls | join(", ") ~ " where 1 = 0)") }}
{%- endmacro %}
