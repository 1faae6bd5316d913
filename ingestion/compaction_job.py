"""``compact_landing_job``: merge a tenant's small landed files, on a schedule (and on demand).

One run per tenant partition, so it never runs beside that tenant's other partition runs
(the instance allows one run per partition at a time); the landing lock keeps it safe
beside everything else (live mode's run, dbt builds): see ``ingestion/compaction.py``.
"""

import dagster as dg

from ingestion.compaction import compact_all
from ingestion.partitions import tenant_partitions
from ingestion.resources import LandingResource


@dg.op(description="Merge the small files of each of the tenant's landed folders into one.")
def compact_tenant_landing(context: dg.OpExecutionContext, landing: LandingResource) -> dict:
    results = compact_all(landing.zone(), context.partition_key)
    for result in results:
        context.log.info(result.line())
    merged = [r for r in results if r.into is not None]
    context.add_output_metadata(
        {
            "folders_compacted": len(merged),
            "files_merged": sum(r.merged_files for r in merged),
            "rows": sum(r.rows for r in merged),
        }
    )
    return {str(r.folder): r.merged_files for r in merged}


@dg.job(
    name="compact_landing_job",
    partitions_def=tenant_partitions,
    description="Merge a tenant's small landed Parquet files into one per folder, without "
    "losing, duplicating or reordering a record; readers never see a half-done merge.",
)
def compact_landing_job() -> None:
    compact_tenant_landing()
