"""Download the configured fish and file groups of a Dataverse data set (opt-in)."""

from pathlib import Path

from _runtime import start

from nlp4neuro.dataverse import fetch_dataset, paper_include_patterns, publish, write_manifest

logger = start(snakemake)
params = snakemake.params
# Files download into a staging folder (resumable, never deleted by Snakemake) and are then
# hard-linked beside the manifest (download.out_dir), into the fish folders the ingest reads.
out_dir = Path(snakemake.output.manifest).parent
include = paper_include_patterns(params.fish, params.groups)
logger.info("doi:%s from %s into %s; patterns %s", params.doi, params.server, out_dir, include)
report = fetch_dataset(
    params.doi,
    params.staging,
    server=params.server,
    include=include,
    timeout_s=params.timeout_s,
    retries=params.retries,
)
write_manifest(publish(report, out_dir), snakemake.output.manifest)
