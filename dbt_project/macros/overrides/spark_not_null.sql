{#
    The `not_null` constraints of the contracted marts, on Spark. dbt-spark enforces them
    with ALTER COLUMN ... SET NOT NULL, which Parquet tables (no Delta or Iceberg here) refuse;
    this checks the built table instead and fails the model naming the column, as DuckDB's
    NOT NULL would. (Overrides dbt-spark's spark__alter_column_set_constraints.)
#}
{% macro spark__alter_column_set_constraints(relation, column_dict) -%}
    {%- for column_name, column in column_dict.items() -%}
        {%- for constraint in column['constraints'] if constraint.type == 'not_null' -%}
            {%- set quoted = adapter.quote(column_name) if column['quote'] else column_name -%}
            {%- set nulls = run_query(
                "select count(*) from " ~ relation ~ " where " ~ quoted ~ " is null"
            ).columns[0].values()[0] -%}
            {%- if nulls > 0 -%}
                {{ exceptions.raise_compiler_error(
                    relation ~ "." ~ column_name ~ " is declared not null and has "
                    ~ nulls ~ " null rows"
                ) }}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
{%- endmacro %}
