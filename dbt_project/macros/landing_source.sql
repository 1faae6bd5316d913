{#
    The relation a staging model reads for one landed entity.

    On DuckDB a source is `read_parquet(<glob>)` over the landing zone (its `landing_files`
    meta), and read_parquet fails when no file matches: on a first run, or when no tenant
    has that feed yet. Then this returns an empty relation typed from the source's YAML
    columns, so `dbt build` still succeeds and the entity simply has no rows.

    On Spark the landed files are a table typed from the same YAML columns (spark__ below).
    Elsewhere a source is a loaded table and is returned as it is.
#}
{% macro landing_source(source_name, table_name) -%}
    {%- if not execute -%}
        {#- parsing: the dependency on the source is what counts -#}
        {{ return(source(source_name, table_name)) }}
    {%- endif -%}
    {{ return(adapter.dispatch('landing_source')(
        source_name, table_name, source_node(source_name, table_name)
    )) }}
{%- endmacro %}

{#- The source's node in the graph: its YAML columns and its `landing_files` glob. -#}
{% macro source_node(source_name, table_name) -%}
    {{ return(graph.sources.values()
        | selectattr('source_name', 'equalto', source_name)
        | selectattr('name', 'equalto', table_name)
        | first) }}
{%- endmacro %}

{% macro default__landing_source(source_name, table_name, node) -%}
    {{ return(source(source_name, table_name)) }}
{%- endmacro %}

{% macro duckdb__landing_source(source_name, table_name, node) -%}
    {%- set relation = source(source_name, table_name) -%}
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

{#
    On Spark: an external Parquet table over the entity's folder, typed from the source's YAML
    columns, re-declared on each build (so it follows the YAML and the landing root). Typed,
    a file that lacks a column gives nulls (as `union_by_name`), and a folder that does not
    exist yet reads as empty (a path-based read or a glob would fail). The folder is read
    recursively and the rows are kept from the files the `landing_files` glob names (the
    entries, not their `resolved/` files); `tenant_id`, which some files carry only in their
    `tenant_id=<id>` folder, is taken from there when the file lacks it.
#}
{% macro spark__landing_source(source_name, table_name, node) -%}
    {%- set files = node.config.meta.landing_files -%}
    {%- set folder = files.split('/*')[0] -%}
    {%- set pattern = files[folder | length:] -%}
    {%- set file_regex = ('/' ~ folder.split('/')[-1] ~ pattern)
        .replace('.', '[.]').replace('*', '[^/]+') ~ '$' -%}
    {%- set table = 'landing.' ~ source_name ~ '__' ~ table_name -%}
    {%- set declared = [] -%}
    {%- set selected = [] -%}
    {%- for column in node.columns.values() -%}
        {%- set name = adapter.quote(column.name) -%}
        {%- do declared.append(name ~ " " ~ sql_type(column.data_type)) -%}
        {%- if column.name == 'tenant_id' -%}
            {%- do selected.append(
                "coalesce(" ~ name ~ ", regexp_extract(_metadata.file_path, '/tenant_id=([^/]+)/', 1)) as " ~ name
            ) -%}
        {%- else -%}
            {%- do selected.append(name) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do run_query("create database if not exists landing") -%}
    {%- do run_query("drop table if exists " ~ table) -%}
    {%- do run_query(
        "create table " ~ table ~ " (" ~ declared | join(", ") ~ ") using parquet options (path "
        ~ dbt.string_literal(folder) ~ ", recursiveFileLookup 'true')"
    ) -%}
    {{ return(
        "(select " ~ selected | join(", ") ~ " from " ~ table
        ~ " where _metadata.file_path rlike " ~ dbt.string_literal(file_regex) ~ ")"
    ) }}
{%- endmacro %}

{#
    A landed column that older files may lack (one added to the landing layout later).

    On DuckDB the sources read with `union_by_name`, which fills the column with null in
    the files that lack it, but a column that no landed file has at all does not exist:
    then this returns a typed null instead of the column's name. Elsewhere (loaded tables)
    the column is always there, and on Spark the table declares it.
#}
{% macro landed_column(source_name, table_name, column_name, data_type) -%}
    {{ return(adapter.dispatch('landed_column')(source_name, table_name, column_name, data_type)) }}
{%- endmacro %}

{% macro default__landed_column(source_name, table_name, column_name, data_type) -%}
    {{ return(column_name) }}
{%- endmacro %}

{% macro duckdb__landed_column(source_name, table_name, column_name, data_type) -%}
    {%- if not execute -%}
        {{ return(column_name) }}
    {%- endif -%}
    {%- set node = source_node(source_name, table_name) -%}
    {%- set files = node.config.meta.landing_files -%}
    {%- set found = run_query("select count(*) from glob('" ~ files ~ "')").columns[0].values()[0] -%}
    {%- if found == 0 -%}
        {#- landing_source's empty relation has every column of the YAML -#}
        {{ return(column_name) }}
    {%- endif -%}
    {%- set present = run_query(
        "select count(*) from (describe select * from read_parquet('" ~ files
        ~ "', union_by_name = true)) where column_name = " ~ dbt.string_literal(column_name)
    ).columns[0].values()[0] -%}
    {%- if present > 0 -%}
        {{ return(column_name) }}
    {%- endif -%}
    {{ return("cast(null as " ~ data_type ~ ")") }}
{%- endmacro %}
