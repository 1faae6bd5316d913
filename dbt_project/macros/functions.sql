{#- Functions the engines name differently. -#}

{#- SHA-256 of a text, as 64 lowercase hex digits. -#}
{% macro sha256_hex(text) -%}
    {{ return(adapter.dispatch('sha256_hex')(text)) }}
{%- endmacro %}

{% macro default__sha256_hex(text) -%}
    sha256({{ text }})
{%- endmacro %}

{% macro spark__sha256_hex(text) -%}
    sha2({{ text }}, 256)
{%- endmacro %}

{#- Whole seconds from one instant to a later one. -#}
{% macro seconds_between(earlier, later) -%}
    {{ return(adapter.dispatch('seconds_between')(earlier, later)) }}
{%- endmacro %}

{% macro default__seconds_between(earlier, later) -%}
    date_diff('second', {{ earlier }}, {{ later }})
{%- endmacro %}

{% macro spark__seconds_between(earlier, later) -%}
    (unix_timestamp({{ later }}) - unix_timestamp({{ earlier }}))
{%- endmacro %}

{#- A text constant as an SQL literal. A quote inside is doubled on DuckDB (standard SQL);
    Spark reads '' as two adjacent literals and escapes it with a backslash instead. -#}
{% macro text_literal(text) -%}
    {{ return(adapter.dispatch('text_literal')(text)) }}
{%- endmacro %}

{% macro default__text_literal(text) -%}
    '{{ text | replace("'", "''") }}'
{%- endmacro %}

{% macro spark__text_literal(text) -%}
    '{{ text | replace("\\", "\\\\") | replace("'", "\\'") }}'
{%- endmacro %}
