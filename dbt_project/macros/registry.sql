{#
    The relation of one file the pipeline writes from the tenant registry and the booking
    API's statuses (warehouse/registry_seeds.py) into the data folder, the `registry_seeds`
    var (default `data/registry`, relative to the working directory like the other paths).
    Generated, so never in this project; read as text, typed by the staging model.
#}
{% macro registry_file(name) -%}
    {%- set path = var('registry_seeds', 'data/registry') ~ '/' ~ name ~ '.csv' -%}
    {{ return(adapter.dispatch('registry_file')(name, path)) }}
{%- endmacro %}

{% macro default__registry_file(name, path) -%}
    read_csv({{ dbt.string_literal(path) }}, header = true, all_varchar = true)
{%- endmacro %}

{#- On Spark a table over the file, declared anew on each build (the staging models are views,
    which cannot read a temporary view); every column is text (no schema inference). -#}
{% macro spark__registry_file(name, path) -%}
    {%- set table = 'landing.registry__' ~ name -%}
    {%- if execute -%}
        {%- do run_query("create database if not exists landing") -%}
        {%- do run_query("drop table if exists " ~ table) -%}
        {%- do run_query(
            "create table " ~ table ~ " using csv options (path "
            ~ dbt.string_literal(path) ~ ", header 'true')"
        ) -%}
    {%- endif -%}
    {{ return(table) }}
{%- endmacro %}
