"""Tests of nlp4neuro.anatomy: atlas formats, affine transforms and region statistics by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.io
import xarray as xr
from fixtures_atlas import SYNTHETIC_VOXEL_SIZE_UM, make_synthetic_atlas

from nlp4neuro.anatomy import (
    OUTSIDE,
    Atlas,
    atlas_kinds,
    load_affine,
    load_atlas,
    lookup_regions,
    neuron_regions,
    read_label_names,
    region_enrichment,
    region_importance,
    regions_from_atlas,
    transform_points,
    voxel_affine,
)
from nlp4neuro.errors import ConfigError, InputFileError

# Hand-placed points (x, y, z) um on the synthetic atlas (voxel 2 x 2 x 5 um; boxes in voxels:
# Pt x 0-9, y 0-9, z 0-4; Hb x 10-19; Cb x 0-9, y 10-19, z 5-9) and the expected labels.
POINTS_UM = np.array(
    [
        [4.0, 6.0, 10.0],  # voxel (2, 3, 2): Pt
        [30.0, 4.0, 45.0],  # (15, 2, 9): Hb
        [4.0, 30.0, 30.0],  # (2, 15, 6): Cb
        [4.0, 4.0, 30.0],  # (2, 2, 6): unlabelled
        [18.9, 18.9, 22.4],  # (9.45, 9.45, 4.48) -> nearest (9, 9, 4): Pt
        [19.0, 4.0, 10.0],  # (9.5, 2, 2) -> half rounds up to x = 10: Hb
        [-2.0, 0.0, 0.0],  # x = -1: outside
        [0.0, 0.0, 50.0],  # z = 10 of 0..9: outside
    ]
)
EXPECTED = ["Pt", "Hb", "Cb", "", "Pt", "Hb", OUTSIDE, OUTSIDE]


def test_atlas_kinds_are_the_schema_values() -> None:
    assert atlas_kinds() == ("zbrain", "nrrd", "tiff", "brainglobe")


@pytest.mark.parametrize("kind", ["nrrd", "tiff", "brainglobe", "zbrain"])
def test_synthetic_atlas_lookup_each_kind(tmp_path, kind) -> None:
    paths = make_synthetic_atlas(tmp_path, kind)
    voxel = SYNTHETIC_VOXEL_SIZE_UM if kind in ("tiff", "zbrain") else None
    atlas = load_atlas(kind, paths["atlas"], names_path=paths["names"], voxel_size_um=voxel)
    assert atlas.voxel_size_um == SYNTHETIC_VOXEL_SIZE_UM
    regions = regions_from_atlas(POINTS_UM, atlas)
    # Z-Brain masks overlap: the whole-volume "Brain" mask labels voxels outside the boxes,
    # while the smaller (more specific) box masks win inside them
    expected = [("Brain" if kind == "zbrain" and e == "" else e) for e in EXPECTED]
    assert regions.tolist() == expected
    assert sorted(set(atlas.names.values()) - {"Brain"}) == ["Cb", "Hb", "Pt"]


def test_zbrain_mask_selection_and_errors(tmp_path) -> None:
    paths = make_synthetic_atlas(tmp_path, "zbrain")
    atlas = load_atlas("zbrain", paths["atlas"], voxel_size_um=(2, 2, 5), masks=["Pt", "Hb"])
    assert regions_from_atlas(POINTS_UM[:4], atlas).tolist() == ["Pt", "Hb", "", ""]
    with pytest.raises(ConfigError, match=r"saliency\.atlas\.masks"):
        load_atlas("zbrain", paths["atlas"], masks=["Telencephalon"])
    bad = tmp_path / "other.mat"
    scipy.io.savemat(bad, {"masks": np.zeros((2, 2))})
    with pytest.raises(InputFileError, match=r"missing \['MaskDatabase'"):
        load_atlas("zbrain", bad)
    # default voxel size is Z-Brain's grid
    assert load_atlas("zbrain", paths["atlas"]).voxel_size_um == (0.798, 0.798, 2.0)


def test_explicit_affine_with_translation_and_scaling(tmp_path) -> None:
    paths = make_synthetic_atlas(tmp_path, "tiff")
    atlas = load_atlas("tiff", paths["atlas"], names_path=paths["names"])
    assert atlas.labels.shape == (10, 20, 20) and atlas.axes == "zyx"
    with pytest.raises(ConfigError, match="voxel size"):
        regions_from_atlas(POINTS_UM, atlas)  # no voxel size and no affine
    # imaging um -> atlas: shifted by (+100, -50, +20) um; TIFF array axes are (z, y, x)
    affine = [
        [0, 0, 1 / 5, -20 / 5],  # z index = (z_img - 20) / 5
        [0, 1 / 2, 0, 50 / 2],  # y index = (y_img + 50) / 2
        [1 / 2, 0, 0, -100 / 2],  # x index = (x_img - 100) / 2
        [0, 0, 0, 1],
    ]
    shifted = POINTS_UM + np.array([100.0, -50.0, 20.0])
    assert regions_from_atlas(shifted, atlas, affine).tolist() == EXPECTED


def test_transform_points_and_voxel_affine_by_hand(tmp_path) -> None:
    affine = np.array([[2, 0, 0, 1], [0, 3, 0, -1], [0, 0, 4, 0.5], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(
        transform_points([[1, 1, 1], [0, 0, 0]], affine), [[3, 2, 4.5], [1, -1, 0.5]]
    )
    # docstring example: TIFF (z, y, x) at 2 x 2 x 5 um: (4, 6, 10) um -> (2, 3, 2)
    np.testing.assert_allclose(
        transform_points([[4, 6, 10]], voxel_affine((2, 2, 5), "zyx")), [[2, 3, 2]]
    )
    with_origin = voxel_affine((2, 2, 5), "xyz", origin_um=(10, 0, -5))
    np.testing.assert_allclose(transform_points([[14, 6, 10]], with_origin), [[2, 3, 3]])
    with pytest.raises(ValueError, match=r"points_um: expected shape \(N, 3\)"):
        transform_points([[1, 2]], affine)


def test_load_affine_sources_and_errors(tmp_path) -> None:
    matrix = voxel_affine((1, 2, 4))
    np.testing.assert_allclose(load_affine(matrix.tolist()), matrix)
    np.savetxt(tmp_path / "a.txt", matrix)
    np.save(tmp_path / "a.npy", matrix)
    np.testing.assert_allclose(load_affine(tmp_path / "a.txt"), matrix)
    np.testing.assert_allclose(load_affine(str(tmp_path / "a.npy")), matrix)
    with pytest.raises(
        ConfigError, match=r"saliency\.atlas\.affine'.*expected a 4x4 affine.*'shape \(3, 4\)'"
    ):
        load_affine(matrix[:3].tolist())
    np.savetxt(tmp_path / "b.txt", np.eye(3))
    with pytest.raises(InputFileError, match=r"b\.txt: expected a 4x4 affine.*shape \(3, 3\)"):
        load_affine(tmp_path / "b.txt")
    with pytest.raises(InputFileError, match="no such file"):
        load_affine(tmp_path / "missing.txt")
    bad_last = matrix.copy()
    bad_last[3, 0] = 1
    with pytest.raises(ConfigError, match="last row"):
        load_affine(bad_last)


def test_load_atlas_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"saliency\.atlas\.kind"):
        load_atlas("allen", tmp_path)
    with pytest.raises(InputFileError, match="no such file"):
        load_atlas("nrrd", tmp_path / "missing.nrrd")
    (tmp_path / "bg").mkdir()
    with pytest.raises(InputFileError, match="missing"):
        load_atlas("brainglobe", tmp_path / "bg")
    paths = make_synthetic_atlas(tmp_path, "nrrd")
    (tmp_path / "names.tsv").write_text("id\tregion\n1\tPt\n")
    with pytest.raises(InputFileError, match=r"expected columns label, name"):
        load_atlas("nrrd", paths["atlas"], names_path=tmp_path / "names.tsv")
    assert read_label_names(paths["names"]) == {1: "Pt", 2: "Hb", 3: "Cb"}
    # without a name table the ids are the names
    assert load_atlas("nrrd", paths["atlas"]).names == {1: "1", 2: "2", 3: "3"}


def test_lookup_unknown_label_and_dataset_regions() -> None:
    atlas = Atlas(np.array([[[0, 7]]]), {}, "xyz", (1.0, 1.0, 1.0), "nrrd", "mem")
    assert lookup_regions(atlas, [[0, 0, 1], [0, 0, 0], [np.nan, 0, 0]]).tolist() == [
        "label_7",
        "",
        OUTSIDE,
    ]
    ds = xr.Dataset(
        coords={
            "neuron": [0, 1],
            "x_um": ("neuron", [0.0, 0.0]),
            "y_um": ("neuron", [0.0, 0.0]),
            "z_um": ("neuron", [1.0, 5.0]),
            "region": ("neuron", ["Pt", ""]),
        }
    )
    assert neuron_regions(ds).tolist() == ["Pt", ""]
    assert neuron_regions(ds, atlas).tolist() == ["label_7", OUTSIDE]


# ---------------------------------------------------------------------------------------------
# Region statistics


def test_region_enrichment_by_hand() -> None:
    # N = 12: A (4), B (6), unlabelled (2); top 3 are all A
    regions = np.array(["A"] * 4 + ["B"] * 6 + [""] * 2)
    importance = np.array([9, 8, 7, 1, 2, 3, 1, 1, 1, 1, 0.5, 0.5], float)
    table = region_enrichment(importance, regions, top_k=3, n_permutations=20_000, seed=0)
    assert table.region.tolist() == ["A", "B"]  # "" is not tested
    a = table.set_index("region").loc["A"]
    assert a["n_top"] == 3 and a["expected"] == pytest.approx(3 * 4 / 12)
    assert a["fold_enrichment"] == pytest.approx(3 / 1.0)
    # P(X >= 3), X ~ Hypergeom(N=12, K=4, n=3) = C(4,3) / C(12,3) = 4 / 220
    assert a["p_hypergeom"] == pytest.approx(4 / 220)
    assert a["p_permutation"] == pytest.approx(4 / 220, abs=0.004)
    # BH over 2 tests: p sorted (4/220, 1): q = (2 * 4/220, 1)
    assert a["q_hypergeom"] == pytest.approx(8 / 220)
    b = table.set_index("region").loc["B"]
    assert b["n_top"] == 0 and b["p_hypergeom"] == pytest.approx(1.0)
    again = region_enrichment(importance, regions, top_k=3, n_permutations=20_000, seed=0)
    pd.testing.assert_frame_equal(table, again)
    with pytest.raises(ValueError, match="top_k"):
        region_enrichment(importance, regions, top_k=13, n_permutations=10, seed=0)


def test_region_importance_by_hand() -> None:
    table = region_importance([1.0, 3.0, 2.0, 10.0, 5.0], ["A", "A", "B", "", "A"])
    assert table.region.tolist() == ["A", "B"]
    a = table.iloc[0]
    assert (a["n_neurons"], a["mean"], a["median"]) == (3, 3.0, 3.0)
    assert a["sd"] == pytest.approx(2.0)
    assert np.isnan(table.iloc[1]["sd"])
