"""A tiny synthetic atlas in every format `nlp4neuro.anatomy.load_atlas` reads (tests only).

A 20 x 20 x 10 voxel (x, y, z) volume at 2 x 2 x 5 um with three boxes (`SYNTHETIC_REGIONS`):
Pt, Hb, Cb; the rest is unlabelled (label 0). Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse

from nlp4neuro.anatomy import atlas_kinds

SYNTHETIC_SHAPE_XYZ = (20, 20, 10)
SYNTHETIC_VOXEL_SIZE_UM = (2.0, 2.0, 5.0)
SYNTHETIC_REGIONS: dict[int, tuple[str, tuple[slice, slice, slice]]] = {
    1: ("Pt", (slice(0, 10), slice(0, 10), slice(0, 5))),
    2: ("Hb", (slice(10, 20), slice(0, 20), slice(0, 10))),
    3: ("Cb", (slice(0, 10), slice(10, 20), slice(5, 10))),
}
"""Synthetic atlas: label -> (name, box as (x, y, z) voxel slices). The rest is label 0."""


def make_synthetic_atlas(out_dir: str | Path, kind: str) -> dict[str, Path | None]:
    """Write the synthetic atlas as `kind` into `out_dir`.

    Kinds: "nrrd" (atlas.nrrd + labels.tsv), "tiff" (atlas.tif, (z, y, x) + labels.tsv),
    "brainglobe" (a folder), "zbrain" (MaskDatabase.mat with one mask per box plus an
    overlapping whole-volume "Brain" mask, as Z-Brain masks overlap).

    Returns:
        {"atlas": file or folder, "names": TSV or None}.
    """
    assert kind in atlas_kinds(), kind
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    volume = synthetic_volume()
    if kind in ("nrrd", "tiff"):
        names_tsv = out / "labels.tsv"
        table = pd.DataFrame(
            {"label": list(SYNTHETIC_REGIONS), "name": [n for n, _ in SYNTHETIC_REGIONS.values()]}
        )
        table.to_csv(names_tsv, sep="\t", index=False)
        writer = _write_nrrd if kind == "nrrd" else _write_tiff
        return {"atlas": writer(out, volume), "names": names_tsv}
    writer = _write_brainglobe if kind == "brainglobe" else _write_zbrain
    return {"atlas": writer(out, volume), "names": None}


def synthetic_volume() -> np.ndarray:
    """(x, y, z) int32 label volume of `SYNTHETIC_REGIONS`."""
    volume = np.zeros(SYNTHETIC_SHAPE_XYZ, dtype=np.int32)
    for label, (_, box) in SYNTHETIC_REGIONS.items():
        volume[box] = label
    return volume


def _write_nrrd(out: Path, volume: np.ndarray) -> Path:
    import nrrd

    path = out / "atlas.nrrd"
    header = {
        "space directions": np.diag(SYNTHETIC_VOXEL_SIZE_UM),
        "space": "left-posterior-superior",
    }
    nrrd.write(str(path), volume, header, index_order="F")
    return path


def _write_tiff(out: Path, volume: np.ndarray) -> Path:
    import tifffile

    path = out / "atlas.tif"
    tifffile.imwrite(path, np.ascontiguousarray(volume.transpose(2, 1, 0)))
    return path


def _write_brainglobe(out: Path, volume: np.ndarray) -> Path:
    import tifffile

    folder = out / "synthetic_atlas_2um"
    folder.mkdir(exist_ok=True)
    tifffile.imwrite(folder / "annotation.tiff", np.ascontiguousarray(volume.transpose(2, 1, 0)))
    structures = [
        {"id": label, "acronym": name, "name": f"synthetic {name}", "structure_id_path": [label]}
        for label, (name, _) in SYNTHETIC_REGIONS.items()
    ]
    (folder / "structures.json").write_text(json.dumps(structures, indent=1))
    metadata = {
        "name": "synthetic_atlas",
        "resolution": list(reversed(SYNTHETIC_VOXEL_SIZE_UM)),
        "shape": list(reversed(SYNTHETIC_SHAPE_XYZ)),
        "orientation": "asr",
    }
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=1))
    return folder


def _write_zbrain(out: Path, volume: np.ndarray) -> Path:
    """Masks as columns of a sparse voxels x masks matrix over (height=y, width=x, Zs=z)."""
    yxz = volume.transpose(1, 0, 2)
    flat = yxz.reshape(-1, order="F")
    columns = [flat == label for label in SYNTHETIC_REGIONS] + [np.ones_like(flat, bool)]
    database = scipy.sparse.csc_matrix(np.column_stack(columns).astype(np.float64))
    mask_names = np.empty((1, len(columns)), dtype=object)
    for i, name in enumerate([n for n, _ in SYNTHETIC_REGIONS.values()] + ["Brain"]):
        mask_names[0, i] = name
    path = out / "MaskDatabase.mat"
    scipy.io.savemat(
        path,
        {
            "MaskDatabase": database,
            "MaskDatabaseNames": mask_names,
            "height": float(yxz.shape[0]),
            "width": float(yxz.shape[1]),
            "Zs": float(yxz.shape[2]),
        },
    )
    return path
