"""Every figure of the pipeline: one `plot_*` function per figure, grouped by stage."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

from nlp4neuro.provenance import atomic_output

logger = logging.getLogger(__name__)

DPI = 200


def save_figure(fig: Figure, out_stem: str | Path) -> list[Path]:
    """Write `<out_stem>.png` and `<out_stem>.svg` atomically; return both paths."""
    stem = Path(out_stem)
    written = []
    # A fixed hash salt and no date keep the SVG byte-identical between runs.
    with mpl.rc_context({"svg.hashsalt": "nlp4neuro"}):
        for suffix, metadata in ((".png", {"Software": None}), (".svg", {"Date": None})):
            path = stem.with_name(stem.name + suffix)
            with atomic_output(path) as tmp:
                fig.savefig(tmp, dpi=DPI, metadata=metadata)
            written.append(path)
    logger.info("wrote %s", ", ".join(str(p) for p in written))
    return written
