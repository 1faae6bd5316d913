{#- Exact types every layer casts to; money never becomes a float. -#}

{#- Amounts: loyalty units, Duffel totals and USD, to the cent. -#}
{% macro money_type() -%}
    decimal(18, 2)
{%- endmacro %}

{#- Conversion rates: USD per loyalty unit or per unit of a fare currency. -#}
{% macro rate_type() -%}
    decimal(18, 8)
{%- endmacro %}

{#- Instants: UTC, with the zone kept (the profile sets the session zone to UTC). -#}
{% macro utc_timestamp_type() -%}
    timestamp with time zone
{%- endmacro %}
