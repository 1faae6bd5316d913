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
    {{ return(landed_after(landing_watermarks(), loaded_at_column, tenant_column)) }}
{%- endmacro %}

{#- Per tenant, the newest loaded_at among this model's rows: (tenant_id, text) rows, none on
    a full build. -#}
{% macro landing_watermarks() -%}
    {%- if not (execute and is_incremental()) -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set watermarks_sql -%}
        select tenant_id, cast(max(loaded_at) as {{ dbt.type_string() }}) as watermark
        from {{ this }}
        group by tenant_id
        order by tenant_id
    {%- endset -%}
    {{ return(run_query(watermarks_sql).rows) }}
{%- endmacro %}

{#- The rows of tenants without a watermark, and those landed after their tenant's. -#}
{% macro landed_after(watermarks, loaded_at_column, tenant_column='tenant_id') -%}
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

{#- The landed rows of a source since this model's last build (staging models): the source
    read where {{ landed_since_last_build }} holds. -#}
{% macro landed_rows_since_last_build(source_name, table_name, loaded_at_column='_loaded_at') -%}
    {{ return(adapter.dispatch('landed_rows_since_last_build')(
        source_name, table_name, loaded_at_column
    )) }}
{%- endmacro %}

{% macro default__landed_rows_since_last_build(source_name, table_name, loaded_at_column) -%}
    select * from {{ landing_source(source_name, table_name) }}
    where {{ landed_since_last_build(loaded_at_column) }}
{%- endmacro %}

{#-
    On DuckDB the watermark predicate mixes the hive column tenant_id with a file column, so
    DuckDB cannot push it into the Parquet scan and would decode every landed row to keep a
    handful (0.5-1 s a model at a million bookings). The files that can hold new rows are
    found first from their footers' statistics: a file is skipped only when all its rows are
    one known tenant's and its newest loaded_at is not after that tenant's watermark. The
    predicate still decides each row of the files read, so the rows are the same.
-#}
{% macro duckdb__landed_rows_since_last_build(source_name, table_name, loaded_at_column) -%}
    {%- set watermarks = landing_watermarks() -%}
    {%- set predicate = landed_after(watermarks, loaded_at_column) -%}
    {%- set relation = landing_source(source_name, table_name) -%}
    {%- if predicate == '1 = 1' or relation is string -%}
        {#- a full build, or nothing landed yet (landing_source's empty typed relation) -#}
        {{ return(default__landed_rows_since_last_build(source_name, table_name, loaded_at_column)) }}
    {%- endif -%}
    {%- set glob = source_node(source_name, table_name).config.meta.landing_files -%}
    {%- set files_sql -%}
        with watermarks (tenant_id, watermark) as (
            values
            {%- for row in watermarks %}
            ({{ dbt.string_literal(row[0]) }}, {{ timestamp_literal(row[1]) }})
            {%- if not loop.last %},{% endif %}
            {%- endfor %}
        ),
        footers as (
            select
                file_name,
                min(case when path_in_schema = 'tenant_id' then stats_min_value end) as tenant_low,
                max(case when path_in_schema = 'tenant_id' then stats_max_value end) as tenant_high,
                max(case when path_in_schema = '{{ loaded_at_column }}'
                    then cast(stats_max_value as {{ utc_timestamp_type() }}) end) as newest,
                bool_or(path_in_schema in ('tenant_id', '{{ loaded_at_column }}')
                    and stats_max_value is null) as without_statistics
            from parquet_metadata('{{ glob }}')
            group by file_name
        )
        select footers.file_name
        from footers
        left join watermarks
            on footers.tenant_low = footers.tenant_high
            and watermarks.tenant_id = footers.tenant_low
        where footers.without_statistics
            or footers.newest is null
            or watermarks.tenant_id is null
            or footers.newest > watermarks.watermark
        order by footers.file_name
    {%- endset -%}
    {%- set files = run_query(files_sql).columns[0].values() -%}
    {%- if files | length == 0 %}
    select * from {{ relation }}
    where 1 = 0
    {%- else %}
    {#- the source's external_location, with each row's file to prune by -#}
    select * from read_parquet(
        '{{ glob }}', hive_partitioning = true, union_by_name = true, filename = true
    )
    where filename in (
        {%- for file in files %}
        {{ dbt.string_literal(file) }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    )
    and {{ predicate }}
    {%- endif %}
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
