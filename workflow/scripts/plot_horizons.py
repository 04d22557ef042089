"""Skill against horizon: the table and figure of decoding ahead (nlp4neuro.horizons)."""

from pathlib import Path

import pandas as pd
from _runtime import start

from nlp4neuro.horizons import horizon_table
from nlp4neuro.plots.evaluation import plot_horizons
from nlp4neuro.provenance import write_table

logger = start(snakemake)
summary = pd.read_csv(snakemake.input.summary)
# the null table when the null is switched on (a named input of zero or one file)
paths = [snakemake.input.null] if isinstance(snakemake.input.null, str) else snakemake.input.null
null = pd.read_csv(paths[0], dtype={"fish": str}) if paths else None
history = pd.concat(
    [pd.read_csv(path, dtype={"fish": str}) for path in snakemake.input.tail_history],
    ignore_index=True,
)
table = horizon_table(summary, null, history)
write_table(table, snakemake.output.table, {"horizons": snakemake.params.horizons})
plot_horizons(table, Path(snakemake.output.figure).with_suffix(""))
if null is None:
    logger.warning("the circular-shift null is switched off: the horizon figure has no floor")
for row in table[table["segment"] == "summed"].itertuples():
    logger.info(
        "%s w%d h%d: R² %.3f ± %.3f (%d fish), %d of %d fish above their null; the tail's "
        "own past %.3f",
        row.model, row.window_frames, row.horizon, row.r2_mean, row.r2_sem, row.n_fish,
        row.n_fish_above_null, row.n_fish_with_null, row.tail_history_r2_mean,
    )  # fmt: skip
