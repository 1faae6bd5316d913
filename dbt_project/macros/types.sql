{#- Exact types every layer casts to; money never becomes a float. -#}

{#- Amounts: loyalty units, Duffel totals and USD, to the cent. -#}
{% macro money_type() -%}
    decimal(18, 2)
{%- endmacro %}

{#- Conversion rates: USD per loyalty unit or per unit of a fare currency. -#}
{% macro rate_type() -%}
    decimal(18, 8)
{%- endmacro %}

{#- Instants: UTC, with the zone kept (the profile sets the session zone to UTC). The YAML
    contracts, which cannot call macros, spell the same choice out with `target.type`. -#}
{% macro utc_timestamp_type() -%}
    {{ return(adapter.dispatch('utc_timestamp_type')()) }}
{%- endmacro %}

{% macro default__utc_timestamp_type() -%}
    timestamp with time zone
{%- endmacro %}

{#- Spark's TIMESTAMP is an instant shown in the session zone (TIMESTAMP_LTZ). -#}
{% macro spark__utc_timestamp_type() -%}
    timestamp
{%- endmacro %}

{#- A type as the YAML names it (source columns, contracts) in the target's SQL: `string`
    is text on both engines; Spark's TIMESTAMP is DuckDB's TIMESTAMP WITH TIME ZONE. -#}
{% macro sql_type(data_type) -%}
    {%- if data_type | lower == 'timestamp with time zone' -%}
        {{ return(utc_timestamp_type()) }}
    {%- endif -%}
    {{ return(data_type) }}
{%- endmacro %}
