{#
    The relation of one file the pipeline writes from the tenant registry and the booking
    API's statuses (warehouse/registry_seeds.py) into the data folder, `REGISTRY_SEEDS`
    (default `data/registry`, relative to the working directory like the other paths).
    Generated, so never in this project; read as text, typed by the staging model.
#}
{% macro registry_file(name) -%}
    {%- set path = env_var('REGISTRY_SEEDS', 'data/registry') ~ '/' ~ name ~ '.csv' -%}
    read_csv({{ dbt.string_literal(path) }}, header = true, all_varchar = true)
{%- endmacro %}
