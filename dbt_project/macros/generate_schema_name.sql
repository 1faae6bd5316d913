{#
    Layers land in schemas named as configured (staging, intermediate, marts, seeds), not
    dbt's default `<target schema>_<custom schema>`: the publish step copies `marts` as is.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
