{#
    How the incremental models absorb only what changed since their last build.

    From the landing zone (staging models): every landed row carries loaded_at, stamped per
    batch when ingestion writes it. One tenant's syncs of an entity run one at a time and
    write their batches in order, so within a tenant the stamps grow with the order the
    files appear in. A staging model's watermark for a tenant is the newest loaded_at among
    its rows; a build takes the tenant's rows landed after it. Tenants land concurrently,
    hence one watermark per tenant rather than one for all.

    Between models (intermediate and marts): every incremental model stamps the rows it
    (re)builds with built_at, the start of the dbt invocation. A downstream model takes the
    upstream rows built after the newest built_at among its own rows, so a build that failed
    half-way is caught up by the next one.

    Watermarks are read when the model runs and inlined as literals, so the predicate
    reaches the Parquet scan (files before the watermark are skipped by their statistics)
    and DuckDB's zone maps.
#}

{#- Rows landed since this model's last build, per tenant (staging models). -#}
{% macro landed_since_last_build(loaded_at_column, tenant_column='tenant_id') -%}
    {%- if not (execute and is_incremental()) -%}
        {{ return('1 = 1') }}
    {%- endif -%}
    {%- set watermarks_sql -%}
        select tenant_id, cast(max(loaded_at) as {{ dbt.type_string() }}) as watermark
        from {{ this }}
        group by tenant_id
        order by tenant_id
    {%- endset -%}
    {%- set watermarks = run_query(watermarks_sql).rows -%}
    {%- if watermarks | length == 0 -%}
        {{ return('1 = 1') }}
    {%- endif -%}
    {%- set known = [] -%}
    {%- set since = [] -%}
    {%- for row in watermarks -%}
        {%- set tenant = dbt.string_literal(row[0]) -%}
        {%- do known.append(tenant) -%}
        {%- do since.append(
            "(" ~ tenant_column ~ " = " ~ tenant ~ " and " ~ loaded_at_column
            ~ " > " ~ timestamp_literal(row[1]) ~ ")"
        ) -%}
    {%- endfor -%}
    {{ return(
        "(" ~ tenant_column ~ " not in (" ~ known | join(", ") ~ ") or "
        ~ since | join(" or ") ~ ")"
    ) }}
{%- endmacro %}

{#- Upstream rows (re)built since this model's last build (intermediate models, marts). -#}
{% macro built_since_last_build(built_at_column='built_at') -%}
    {%- if not (execute and is_incremental()) -%}
        {{ return('1 = 1') }}
    {%- endif -%}
    {%- set watermark_sql -%}
        select cast(max(built_at) as {{ dbt.type_string() }}) from {{ this }}
    {%- endset -%}
    {%- set watermark = run_query(watermark_sql).columns[0].values()[0] -%}
    {%- if watermark is none -%}
        {{ return('1 = 1') }}
    {%- endif -%}
    {{ return(built_at_column ~ " > " ~ timestamp_literal(watermark)) }}
{%- endmacro %}

{#- The built_at of every row this invocation (re)builds. -#}
{% macro build_started_at() -%}
    {{ timestamp_literal(run_started_at.isoformat()) }}
{%- endmacro %}

{% macro timestamp_literal(text) -%}
    cast({{ dbt.string_literal(text) }} as {{ utc_timestamp_type() }})
{%- endmacro %}

{#- A staging model's new rows (the CTE `new_rows`) and, on an incremental build, the rows
    already stored under the same keys, so the latest version wins among both. -#}
{% macro with_stored_versions(new_rows, key_columns) -%}
    {%- if is_incremental() %}
    select
        *,
        cast(null as {{ utc_timestamp_type() }}) as built_at
    from {{ new_rows }}
    union all
    select stored.*
    from {{ this }} as stored
    inner join (select distinct {{ key_columns | join(', ') }} from {{ new_rows }}) as arrived
        on
        {%- for column in key_columns %}
            {% if not loop.first %}and {% endif %}stored.{{ column }} = arrived.{{ column }}
        {%- endfor %}
    {%- else %}
    select * from {{ new_rows }}
    {%- endif %}
{%- endmacro %}
