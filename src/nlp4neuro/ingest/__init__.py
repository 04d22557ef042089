"""Ingest: one fish's raw files, in any supported layout, into the one "ingested" dataset.

``ingest_source(data.source, path, fish, IngestParams.from_config(data))`` is the entry point.
One module per input layout, all building the dataset through
:func:`nlp4neuro.ingest.contract.ingested_dataset`:

- :mod:`~nlp4neuro.ingest.suite2p`: suite2p plane folders (the paper's raw layout, a general
  suite2p output, or the simulator's folders);
- :mod:`~nlp4neuro.ingest.prepared`: the paper's prepared matrices;
- :mod:`~nlp4neuro.ingest.nwb`: Neurodata Without Borders files;

with the shared readers in :mod:`~nlp4neuro.ingest.tail` (tail, stimulus, neuron labels),
:mod:`~nlp4neuro.ingest.functional_types` (the paper's region table) and
:mod:`~nlp4neuro.ingest.images` (plane mean images).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import xarray as xr

from nlp4neuro.config import allowed_values
from nlp4neuro.errors import ConfigError
from nlp4neuro.ingest.contract import IngestParams
from nlp4neuro.ingest.nwb import ingest_nwb
from nlp4neuro.ingest.prepared import ingest_prepared
from nlp4neuro.ingest.suite2p import ingest_suite2p

__all__ = ["READERS", "IngestParams", "ingest_source"]

# data.source -> reader(path, fish, params); the simulator writes suite2p-style folders.
READERS: dict[str, Callable[[str | Path, str, IngestParams], xr.Dataset]] = {
    "synthetic": ingest_suite2p,
    "suite2p": ingest_suite2p,
    "prepared": ingest_prepared,
    "nwb": ingest_nwb,
}


def ingest_source(source: str, path: str | Path, fish: str, params: IngestParams) -> xr.Dataset:
    """Ingest one fish from any supported layout into the same "ingested" dataset.

    Args:
        source: data.source: "synthetic" or "suite2p" (a suite2p-style fish folder), "prepared"
            (the paper's prepared matrices folder) or "nwb" (one NWB file).
        path: the fish's folder (or NWB file).
        fish: fish identifier.
        params: the validated ``data`` section (`IngestParams.from_config`).
    """
    if source not in READERS:
        raise ConfigError("data.source", f"one of {allowed_values('data', 'source')}", source)
    return READERS[source](path, str(fish), params)
