"""Tests for nlp4neuro.ingest (dispatch) and .contract (the one ingested-dataset builder)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from fixtures_ingest import (
    check_ingested_contract,
    params,
    two_plane_nwb,
    write_paper_raw_fixture,
    write_prepared,
)

from nlp4neuro.config import allowed_values, section
from nlp4neuro.errors import ConfigError
from nlp4neuro.ingest import READERS, IngestParams, ingest_source
from nlp4neuro.ingest.contract import (
    Neurons,
    PerFrameTail,
    ingested_dataset,
    source_checksums,
    tail_coverage,
)


def test_every_schema_source_has_a_reader() -> None:
    assert set(READERS) == set(allowed_values("data", "source"))
    with pytest.raises(ConfigError, match=r"data\.source.*'hdf'"):
        ingest_source("hdf", ".", "1", params())


def test_ingest_params_come_from_the_schema() -> None:
    p = IngestParams.from_config(section("data"))
    assert p.functional_types_file is None and p.min_tail_coverage == 0.9
    assert p.tail_file == "plane_0/tail_df.h5" and p.nwb["mask_order"] == "yx"


def test_dispatch_reads_each_layout(tmp_path: Path) -> None:
    raw = write_paper_raw_fixture(tmp_path, fish=9)
    data_dir = tmp_path / "fish9" / "data"
    write_prepared(data_dir, 9, n_neurons=5, n_frames=12, n_tail=10)
    nwb = two_plane_nwb(tmp_path / "fish9.nwb")
    for source, path in (
        ("suite2p", raw),
        ("synthetic", raw),
        ("prepared", data_dir),
        ("nwb", nwb),
    ):
        ds = ingest_source(
            source, path, "9", params(frame_rate_hz=1.1 if source != "nwb" else None)
        )
        check_ingested_contract(ds)
        assert json.loads(ds.attrs["ingest"])["format"] == {"synthetic": "suite2p"}.get(
            source, source
        )


def test_tail_coverage_ignores_the_two_trailing_frames() -> None:
    assert tail_coverage(10, 12) == 1.0  # frames 0..9 of 12: the paper's full coverage
    assert tail_coverage(12, 12) == 1.0  # more than expected is capped
    assert tail_coverage(5, 12) == 0.5
    assert tail_coverage(1, 1) == 1.0


def test_partial_tail_warns_names_file_and_is_recorded(tmp_path: Path, caplog) -> None:
    # 20 frames, tail samples for frames 0..8 only: 9 of the 18 expected frames
    fish_dir = write_paper_raw_fixture(tmp_path, n_frames=20, tail_frames=9)
    with caplog.at_level(logging.WARNING, logger="nlp4neuro.ingest.contract"):
        ds = ingest_source("suite2p", fish_dir, "9", params(frame_rate_hz=1.1))
    assert ds.attrs["tail_coverage"] == 0.5
    assert json.loads(ds.attrs["counts"])["tail_coverage"] == 0.5
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("plane_0/tail_df.h5" in m and "50.0%" in m for m in warned), warned
    # below the threshold only: a lower data.min_tail_coverage keeps quiet
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nlp4neuro.ingest.contract"):
        ingest_source("suite2p", fish_dir, "9", params(frame_rate_hz=1.1, min_tail_coverage=0.4))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_builder_stores_mappings_as_json_and_dtypes(tmp_path: Path) -> None:
    n = 2
    source = tmp_path / "tail.h5"
    source.write_bytes(b"x")
    neurons = Neurons(
        plane=np.array([0, 1]),
        roi=np.array([0, 0]),
        x_um=np.array([1.0, 2.0]),
        y_um=np.array([3.0, 4.0]),
        z_um=np.array([0.0, 10.0]),
        region=np.array(["Hb", ""]),
        time_offset_s=np.array([0.0, 0.5]),
    )
    tail = PerFrameTail(
        np.array([0, 1]), np.zeros((2, 6)), [f"theta_{j:02d}" for j in range(6)], {}, source
    )
    ds = ingested_dataset(
        F=np.ones((n, 4), dtype=np.float64),
        Fneu=None,
        neurons=neurons,
        tail=tail,
        stimulus=np.array(["", "a", "", ""]),
        attrs={"fish": "1", "counts": {"n": np.int64(2)}, "ingest": {"path": tmp_path}},
        f_attrs={"units": "a.u."},
        min_tail_coverage=0.9,
    )
    assert ds["F"].dtype == np.float32 and ds["tail"].dtype == np.float32
    assert json.loads(ds.attrs["counts"]) == {"n": 2, "tail_coverage": 1.0}
    assert json.loads(ds.attrs["ingest"]) == {"path": str(tmp_path)}
    assert source_checksums([source, source], tmp_path) == {
        "tail.h5": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    }
