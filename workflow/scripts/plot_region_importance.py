"""Mean importance per region with one dot per fish, for one model."""

from pathlib import Path

import pandas as pd
from _runtime import start

from nlp4neuro.plots.saliency import plot_region_importance

logger = start(snakemake)
tables = {
    str(fish): pd.read_csv(path, keep_default_na=False, na_values=[""])
    for fish, path in zip(snakemake.params.fish, snakemake.input.regions, strict=True)
}
plot_region_importance(tables, Path(snakemake.output.figure).with_suffix(""))
