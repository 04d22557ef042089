"""Neurons -> brain regions, and region-level statistics of importance maps.

Where region labels come from:

(a) the dataset: the ``region`` coord of the fish's netCDF ("" where unknown); the paper's data
    carry only coarse "Pt" (pretectum) / "Hb" (hindbrain) labels for some neurons of 3 fish;
(b) a user-supplied atlas (no Python package ships larval zebrafish masks and the data carry no
    3-D registration), loaded by `load_atlas(kind, path)`:

    - ``"zbrain"``: Z-Brain ``MaskDatabase.mat`` (Randlett et al. 2015), read with
      scipy.io.loadmat (MATLAB v5/v7 files; v7.3/HDF5 files must be re-saved with ``-v7``).
      Variables used: ``MaskDatabase`` (sparse or dense, voxels x n_masks; each column is one
      mask volume of shape (height, width, Zs) flattened in MATLAB's column-major order),
      ``MaskDatabaseNames`` (cell array of n_masks names), ``height``, ``width``, ``Zs``. Z-Brain
      masks overlap (a region and its subregions); each voxel gets the SMALLEST mask containing
      it (the most specific), optionally among a chosen subset of masks (`masks`).
      Array axes: (y, x, z); default voxel size 0.798 x 0.798 x 2 um (x, y, z), Z-Brain's grid.
    - ``"nrrd"``: an integer label stack read with pynrrd (array axes in NRRD order, fastest
      first: x, y, z); voxel size from ``space directions`` or ``spacings``; names from a TSV
      (columns ``label``, ``name``).
    - ``"tiff"``: an integer label stack read with tifffile (array axes (z, y, x)); the voxel size
      must be given (x, y, z) unless an explicit affine is used; names from a TSV as above.
    - ``"brainglobe"``: a BrainGlobe atlas folder (``annotation.tiff``, ``structures.json`` with
      ``id``/``acronym``/``name``, ``metadata.json`` with ``resolution`` per array axis, in um).
      Region names are acronyms. Array axes are treated as (z, y, x) like a TIFF stack; a
      registration affine is needed in practice since atlas axes are anatomical.

Coordinates: neuron positions are (x_um, y_um, z_um) in the imaging frame. An affine (4 x 4,
homogeneous) maps them to voxel indices of the label volume IN ITS ARRAY AXIS ORDER (row i of the
affine gives the index along array axis i). Without an affine, `Atlas.default_affine` assumes the
points are already in the atlas's physical space (um, origin at voxel 0) and only scales by the
voxel size and permutes axes. Lookups take the nearest voxel; points outside the volume get
"outside" and unlabelled voxels (label 0) get "".

Region statistics: `region_enrichment` (are the top-k salient neurons over-represented in a
region? hypergeometric and permutation p with Benjamini-Hochberg), `region_importance` (mean /
median importance per region). Whether fish agree on the ranking of regions is
`nlp4neuro.metrics.rank_consistency`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse
import xarray as xr
from scipy import stats
from statsmodels.stats.multitest import multipletests

from nlp4neuro.config import allowed_values
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.metrics import top_k_indices

logger = logging.getLogger(__name__)

OUTSIDE = "outside"
"""Region of a point that falls outside the atlas volume."""
UNLABELLED = ""
"""Region of a point on an unlabelled voxel (label 0), as in the dataset's ``region`` coord."""
SKIP_LABELS = (UNLABELLED, OUTSIDE)
"""Labels that region statistics do not test (they are not regions)."""

ZBRAIN_VOXEL_SIZE_UM = (0.798, 0.798, 2.0)
"""Z-Brain reference grid (x, y, z), um per voxel (1406 x 621 x 138 voxels)."""

# ----------------------------------------------------------------------------------------------
# Atlases


def atlas_kinds() -> tuple[str, ...]:
    """Atlas file formats `load_atlas` reads (the schema's ``saliency.atlas.kind`` values)."""
    return tuple(kind for kind in allowed_values("saliency", "atlas", "kind") if kind is not None)


@dataclass(frozen=True, eq=False)
class Atlas:
    """An integer label volume with region names.

    Attributes:
        labels: 3-D integer array, in the file's array axis order (see `axes`); 0 = unlabelled.
        names: {label id: region name} (acronym where the atlas has one).
        axes: which physical axis each array axis runs along, e.g. "zyx" for a TIFF stack.
        voxel_size_um: (x, y, z) um per voxel, or None if unknown (an affine is then required).
        kind: the file format, one of `atlas_kinds()`.
        source: path the atlas was read from.
        full_names: {label id: full name} where the atlas provides them.
    """

    labels: np.ndarray
    names: dict[int, str]
    axes: str
    voxel_size_um: tuple[float, float, float] | None
    kind: str
    source: str
    full_names: dict[int, str] = field(default_factory=dict)

    def default_affine(self) -> np.ndarray:
        """Affine for points already in atlas space (um, origin at voxel 0): scale + permute."""
        if self.voxel_size_um is None:
            raise ConfigError(
                "saliency.atlas.affine",
                f"an affine or a voxel size for the {self.kind} atlas {self.source}",
                None,
            )
        return voxel_affine(self.voxel_size_um, self.axes)


def voxel_affine(
    voxel_size_um: Sequence[float],
    axes: str = "xyz",
    origin_um: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """4 x 4 affine from (x, y, z) um to voxel indices of an array with axes `axes`.

    Row i maps to array axis i: index_i = (p[a] - origin_um[a]) / voxel_size_um[a] where a is
    the physical axis `axes[i]`. E.g. a TIFF stack (axes "zyx", voxel (2, 2, 5) um): the point
    (x=4, y=6, z=10) um -> indices (2, 3, 2).
    """
    size = np.asarray(voxel_size_um, dtype=np.float64)
    origin = np.asarray(origin_um, dtype=np.float64)
    if size.shape != (3,) or not np.all(size > 0):
        raise ConfigError(
            "saliency.atlas.voxel_size_um", "3 positive numbers (x, y, z)", voxel_size_um
        )
    if sorted(axes) != ["x", "y", "z"]:
        raise ValueError(f"axes: expected a permutation of 'xyz', found {axes!r}")
    affine = np.zeros((4, 4))
    for row, axis in enumerate(axes):
        a = "xyz".index(axis)
        affine[row, a] = 1.0 / size[a]
        affine[row, 3] = -origin[a] / size[a]
    affine[3, 3] = 1.0
    return affine


def load_affine(value: Any) -> np.ndarray:
    """A 4 x 4 affine from a list of lists (config), a .txt (whitespace table) or .npy file.

    Raises:
        InputFileError: the file is missing or does not hold a 4 x 4 affine.
        ConfigError: an inline value is not a 4 x 4 affine.
    """
    if isinstance(value, str | Path):
        path = Path(value)
        if not path.is_file():
            raise InputFileError(path, "a 4x4 affine (.txt or .npy)", "no such file")
        try:
            matrix = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=2)
        except ValueError as err:
            raise InputFileError(path, "a 4x4 table of numbers", str(err)) from err
        matrix = np.asarray(matrix, dtype=np.float64)
        problem = _affine_problem(matrix)
        if problem:
            raise InputFileError(path, "a 4x4 affine with last row 0 0 0 1", problem)
        return matrix
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError("saliency.atlas.affine", "a 4x4 list of lists of numbers", value) from err
    problem = _affine_problem(matrix)
    if problem:
        raise ConfigError("saliency.atlas.affine", "a 4x4 affine with last row 0 0 0 1", problem)
    return matrix


def _affine_problem(matrix: np.ndarray) -> str | None:
    if matrix.shape != (4, 4):
        return f"shape {matrix.shape}"
    if not np.all(np.isfinite(matrix)):
        return "non-finite values"
    if not np.allclose(matrix[3], [0, 0, 0, 1]):
        return f"last row {matrix[3].tolist()}"
    return None


def transform_points(points_um: Any, affine: Any) -> np.ndarray:
    """Apply a 4 x 4 affine to points: (N, 3) -> (N, 3), float64."""
    points = np.asarray(points_um, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points_um: expected shape (N, 3), found {points.shape}")
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ConfigError("saliency.atlas.affine", "a 4x4 affine", f"shape {matrix.shape}")
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def lookup_regions(atlas: Atlas, points_vox: Any) -> np.ndarray:
    """Region name of each point given in voxel indices (array axis order), nearest voxel.

    Returns:
        (N,) str array: region name, "" for label 0, "outside" outside the volume (or for
        non-finite points), "label_<id>" for ids missing from the name table.
    """
    points = np.asarray(points_vox, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points_vox: expected shape (N, 3), found {points.shape}")
    shape = np.asarray(atlas.labels.shape)
    finite = np.all(np.isfinite(points), axis=1)
    # half-up rounding: a point exactly between two voxel centres goes to the higher index
    index = np.floor(np.where(finite[:, None], points, 0.0) + 0.5).astype(np.int64)
    inside = finite & np.all((index >= 0) & (index < shape), axis=1)
    ids = np.zeros(points.shape[0], dtype=np.int64)
    ids[inside] = atlas.labels[tuple(index[inside].T)]
    unknown = sorted(set(np.unique(ids[inside]).tolist()) - set(atlas.names) - {0})
    if unknown:
        logger.warning(
            "%s: label id(s) %s have no name; reported as label_<id>", atlas.source, unknown[:10]
        )
    table = {0: UNLABELLED, **atlas.names, **{u: f"label_{u}" for u in unknown}}
    names = np.array([table[i] for i in ids.tolist()], dtype=object)
    names[~inside] = OUTSIDE
    return names.astype(str)


def regions_from_atlas(points_um: Any, atlas: Atlas, affine: Any = None) -> np.ndarray:
    """Region of each neuron: transform (x, y, z) um with `affine` (default: the atlas's
    voxel scaling) and look up the nearest voxel. Returns (N,) str; logs label coverage."""
    matrix = atlas.default_affine() if affine is None else load_affine(affine)
    regions = lookup_regions(atlas, transform_points(points_um, matrix))
    n_outside = int(np.sum(regions == OUTSIDE))
    n_unlabelled = int(np.sum(regions == UNLABELLED))
    logger.info(
        "atlas %s: %d neurons, %d outside the volume, %d on unlabelled voxels",
        atlas.source,
        regions.size,
        n_outside,
        n_unlabelled,
    )
    if n_outside == regions.size:
        logger.warning("every neuron falls outside the atlas %s: check the affine", atlas.source)
    return regions


def neuron_points_um(dataset: xr.Dataset) -> np.ndarray:
    """(N, 3) float64 neuron positions (x_um, y_um, z_um) from a fish dataset."""
    missing = [c for c in ("x_um", "y_um", "z_um") if c not in dataset.coords]
    if missing:
        raise ValueError(f"dataset: expected neuron coords x_um, y_um, z_um, missing {missing}")
    return np.column_stack([dataset[c].values for c in ("x_um", "y_um", "z_um")]).astype(float)


def neuron_regions(
    dataset: xr.Dataset, atlas: Atlas | None = None, affine: Any = None
) -> np.ndarray:
    """Region per neuron: the dataset's ``region`` coord, or an atlas lookup when given."""
    if atlas is not None:
        return regions_from_atlas(neuron_points_um(dataset), atlas, affine)
    if "region" not in dataset.coords:
        raise ValueError("dataset: expected a 'region' neuron coord (or pass an atlas)")
    return np.asarray(dataset["region"].values).astype(str)


def read_label_names(path: str | Path) -> dict[int, str]:
    """{label id: name} from a TSV with columns ``label`` (integer) and ``name``."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "a TSV with columns label, name", "no such file")
    table = pd.read_csv(path, sep="\t", dtype={"name": str}, keep_default_na=False)
    if not {"label", "name"} <= set(table.columns):
        raise InputFileError(path, "columns label, name", f"columns {list(table.columns)}")
    labels = pd.to_numeric(table["label"], errors="coerce")
    if labels.isna().any() or not np.all(labels == np.round(labels)):
        raise InputFileError(path, "integer labels", f"{table['label'].tolist()[:5]}...")
    if labels.duplicated().any():
        raise InputFileError(path, "unique labels", f"duplicates {labels[labels.duplicated()]}")
    return dict(zip(labels.astype(int).tolist(), table["name"].tolist(), strict=True))


def _integer_labels(path: Path, data: np.ndarray) -> np.ndarray:
    if data.ndim != 3:
        raise InputFileError(path, "a 3-D label volume", f"shape {data.shape}")
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise InputFileError(path, "integer labels", f"non-integer values ({data.dtype})")
        data = data.astype(np.int64)
    if data.min() < 0:
        raise InputFileError(path, "labels >= 0", f"minimum {data.min()}")
    return data


def _voxel_size(value: Any) -> tuple[float, float, float] | None:
    if value is None:
        return None
    size = tuple(float(v) for v in np.asarray(value, dtype=np.float64).ravel())
    if len(size) != 3 or not all(v > 0 for v in size):
        raise ConfigError("saliency.atlas.voxel_size_um", "3 positive numbers (x, y, z)", value)
    return size  # type: ignore[return-value]


def load_atlas(
    kind: str,
    path: str | Path,
    *,
    names_path: str | Path | None = None,
    voxel_size_um: Sequence[float] | None = None,
    masks: Sequence[str] | None = None,
) -> Atlas:
    """Read a user-supplied atlas (see the module docstring for each kind's files).

    Args:
        kind: "zbrain", "nrrd", "tiff" or "brainglobe".
        path: the .mat / .nrrd / .tif file, or the BrainGlobe folder.
        names_path: TSV (label, name) for "nrrd" and "tiff"; without it names are the ids.
        voxel_size_um: (x, y, z) um per voxel; overrides the file's (NRRD header, BrainGlobe
            metadata, Z-Brain's grid) and is needed for TIFF stacks when no affine is used.
        masks: Z-Brain only: mask names to use (default all); e.g. the major divisions only.

    Raises:
        ConfigError: unknown kind. InputFileError: missing or malformed files.
    """
    if kind not in atlas_kinds():
        raise ConfigError("saliency.atlas.kind", f"one of {atlas_kinds()}", kind)
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, f"a {kind} atlas", "no such file or folder")
    voxel = _voxel_size(voxel_size_um)
    if kind == "zbrain":
        atlas = _load_zbrain(path, voxel or ZBRAIN_VOXEL_SIZE_UM, masks)
    elif kind == "nrrd":
        atlas = _load_nrrd(path, names_path, voxel)
    elif kind == "tiff":
        atlas = _load_tiff(path, names_path, voxel)
    else:
        atlas = _load_brainglobe(path, voxel)
    logger.info(
        "atlas %s (%s): shape %s, %d named regions, voxel %s um",
        path,
        kind,
        atlas.labels.shape,
        len(atlas.names),
        atlas.voxel_size_um,
    )
    return atlas


def _load_zbrain(path: Path, voxel: tuple[float, float, float], masks: Any) -> Atlas:
    try:
        mat = scipy.io.loadmat(str(path))
    except NotImplementedError as err:  # scipy's message for v7.3 (HDF5) files
        raise InputFileError(
            path,
            "a MATLAB v5/v7 .mat file (re-save v7.3 files with save(..., '-v7'))",
            "a v7.3 (HDF5) file",
        ) from err
    except (ValueError, TypeError, OSError) as err:
        raise InputFileError(path, "a MATLAB .mat file", str(err)) from err
    required = ("MaskDatabase", "MaskDatabaseNames", "height", "width", "Zs")
    missing = [key for key in required if key not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise InputFileError(path, f"variables {list(required)}", f"{found} (missing {missing})")
    database = mat["MaskDatabase"]
    database = (
        scipy.sparse.csc_matrix(database)
        if not scipy.sparse.issparse(database)
        else (database.tocsc())
    )
    height, width, n_z = (int(np.squeeze(mat[key])) for key in ("height", "width", "Zs"))
    if database.shape[0] != height * width * n_z:
        raise InputFileError(
            path,
            f"MaskDatabase with height*width*Zs = {height * width * n_z} rows",
            f"shape {database.shape}",
        )
    names = [_matlab_string(item) for item in np.asarray(mat["MaskDatabaseNames"]).ravel()]
    if len(names) != database.shape[1]:
        raise InputFileError(
            path, f"{database.shape[1]} MaskDatabaseNames (one per mask)", f"{len(names)}"
        )
    columns = np.arange(len(names))
    if masks is not None:
        unknown = sorted(set(masks) - set(names))
        if unknown:
            raise ConfigError("saliency.atlas.masks", f"names in {path.name}", unknown)
        columns = np.array([i for i, name in enumerate(names) if name in set(masks)])
    coo = database[:, columns].tocoo()
    keep = coo.data != 0
    rows, cols = coo.row[keep], columns[coo.col[keep]]
    sizes = np.asarray((database != 0).sum(axis=0)).ravel()
    # smallest (most specific) mask wins; ties go to the lower mask index
    order = np.lexsort((cols, sizes[cols], rows))
    rows, cols = rows[order], cols[order]
    first = np.unique(rows, return_index=True)[1]
    flat = np.zeros(height * width * n_z, dtype=np.int32)
    flat[rows[first]] = cols[first] + 1
    labels = flat.reshape((height, width, n_z), order="F")  # MATLAB column-major masks
    return Atlas(
        labels=labels,
        names={int(i) + 1: names[i] for i in columns},
        axes="yxz",
        voxel_size_um=voxel,
        kind="zbrain",
        source=str(path),
    )


def _matlab_string(item: Any) -> str:
    value = np.asarray(item).ravel()
    return str(value[0]) if value.size else ""


def _load_nrrd(path: Path, names_path: Any, voxel: Any) -> Atlas:
    import nrrd

    try:
        data, header = nrrd.read(str(path))  # index_order "F": array axes = NRRD axes (x, y, z)
    except Exception as err:  # pynrrd raises its own NRRDError and others on bad files
        raise InputFileError(path, "an NRRD label volume", f"{type(err).__name__}: {err}") from err
    labels = _integer_labels(path, np.asarray(data))
    if voxel is None:
        if header.get("space directions") is not None:
            directions = np.asarray(header["space directions"], dtype=np.float64)
            voxel = _voxel_size(np.linalg.norm(directions, axis=1))
        elif header.get("spacings") is not None:
            voxel = _voxel_size(header["spacings"])
    names = read_label_names(names_path) if names_path else _id_names(labels)
    return Atlas(labels, names, "xyz", voxel, "nrrd", str(path))


def _load_tiff(path: Path, names_path: Any, voxel: Any) -> Atlas:
    import tifffile

    try:
        data = tifffile.imread(str(path))
    except Exception as err:  # tifffile raises several types on bad files
        raise InputFileError(path, "a TIFF label stack", f"{type(err).__name__}: {err}") from err
    labels = _integer_labels(path, np.asarray(data))
    names = read_label_names(names_path) if names_path else _id_names(labels)
    return Atlas(labels, names, "zyx", voxel, "tiff", str(path))


def _load_brainglobe(path: Path, voxel: Any) -> Atlas:
    import tifffile

    files = {name: path / name for name in ("annotation.tiff", "structures.json", "metadata.json")}
    missing = [name for name, f in files.items() if not f.is_file()]
    if missing:
        raise InputFileError(path, "a BrainGlobe atlas folder", f"missing {missing}")
    labels = _integer_labels(files["annotation.tiff"], tifffile.imread(files["annotation.tiff"]))
    try:
        structures = json.loads(files["structures.json"].read_text())
        metadata = json.loads(files["metadata.json"].read_text())
    except json.JSONDecodeError as err:
        raise InputFileError(path, "valid JSON structures/metadata", str(err)) from err
    if not isinstance(structures, list) or not all(
        isinstance(s, dict) and {"id", "acronym"} <= set(s) for s in structures
    ):
        raise InputFileError(files["structures.json"], "a list of {id, acronym, name}", "other")
    if voxel is None and "resolution" in metadata:
        # BrainGlobe gives resolution per array axis; arrays are read as (z, y, x)
        voxel = _voxel_size(list(reversed(metadata["resolution"])))
    names = {int(s["id"]): str(s["acronym"]) for s in structures}
    full = {int(s["id"]): str(s.get("name", s["acronym"])) for s in structures}
    return Atlas(labels, names, "zyx", voxel, "brainglobe", str(path), full)


def _id_names(labels: np.ndarray) -> dict[int, str]:
    return {int(i): str(int(i)) for i in np.unique(labels) if i != 0}


# ----------------------------------------------------------------------------------------------
# Region statistics


def _importance_and_regions(importance: Any, regions: Any) -> tuple[np.ndarray, np.ndarray]:
    importance = np.asarray(importance, dtype=np.float64).ravel()
    regions = np.asarray(regions).astype(str).ravel()
    if importance.shape != regions.shape:
        raise ValueError(
            f"importance, regions: expected one shape (N,), found "
            f"{importance.shape} and {regions.shape}"
        )
    if not np.all(np.isfinite(importance)):
        raise ValueError("importance: expected finite values, found NaN or inf")
    return importance, regions


def region_enrichment(
    importance: Any,
    regions: Any,
    top_k: int,
    n_permutations: int,
    seed: int,
    skip_labels: Sequence[str] = SKIP_LABELS,
) -> pd.DataFrame:
    """Are the top-k most important neurons over-represented in a region?

    The top-k set is taken over ALL neurons (ties broken by lower index); neurons labelled
    "" or "outside" stay in the universe but are not tested. For each region with n_r of N
    neurons and c_r of the top k: expected = k n_r / N, fold = c_r / expected,
    p_hypergeom = P(X >= c_r) for X ~ Hypergeom(N, n_r, k) (exact one-sided test), and a
    permutation p from `n_permutations` uniformly random k-subsets drawn with a seeded
    generator, p = (1 + #{c_perm >= c_r}) / (1 + n_permutations). Benjamini-Hochberg q values
    across the tested regions for both.

    Returns:
        One row per tested region sorted by p_hypergeom: region, n_neurons, n_top, expected,
        fold_enrichment, p_hypergeom, p_permutation, q_hypergeom, q_permutation.
    """
    importance, regions = _importance_and_regions(importance, regions)
    n = importance.size
    if not 1 <= int(top_k) <= n:
        raise ValueError(f"top_k: expected 1..{n}, found {top_k}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations: expected >= 1, found {n_permutations}")
    top_k = int(top_k)
    names, codes = np.unique(regions, return_inverse=True)
    n_region = np.bincount(codes, minlength=names.size)
    observed = np.bincount(codes[top_k_indices(importance, top_k)], minlength=names.size)
    at_least = _permutation_counts(codes, names.size, observed, top_k, n_permutations, seed)

    tested = ~np.isin(names, list(skip_labels))
    if not tested.any():
        raise ValueError(f"regions: expected labels other than {list(skip_labels)}, found none")
    table = pd.DataFrame(
        {
            "region": names,
            "n_neurons": n_region,
            "n_top": observed,
            "expected": top_k * n_region / n,
            "p_hypergeom": stats.hypergeom.sf(observed - 1, n, n_region, top_k),
            "p_permutation": (1 + at_least) / (1 + n_permutations),
        }
    )[tested].reset_index(drop=True)
    table.insert(4, "fold_enrichment", table["n_top"] / table["expected"])
    table["q_hypergeom"] = multipletests(table["p_hypergeom"], method="fdr_bh")[1]
    table["q_permutation"] = multipletests(table["p_permutation"], method="fdr_bh")[1]
    return table.sort_values(["p_hypergeom", "region"], ignore_index=True)


def _permutation_counts(
    codes: np.ndarray,
    n_regions: int,
    observed: np.ndarray,
    top_k: int,
    n_permutations: int,
    seed: int,
) -> np.ndarray:
    """(n_regions,) how many of `n_permutations` random top-k sets hold >= `observed` per region.

    `codes` (N,) is each neuron's region index. Subsets are drawn in chunks of about 4 M
    uniforms (memory) from one generator seeded with `seed`.
    """
    n = codes.size
    rng = np.random.default_rng(seed)
    at_least = np.zeros(n_regions, dtype=np.int64)
    chunk = max(1, min(n_permutations, 2**22 // max(n, 1)))
    done = 0
    while done < n_permutations:
        m = min(chunk, n_permutations - done)
        # a uniformly random k-subset per row: the k smallest of N iid uniforms
        subsets = np.argpartition(rng.random((m, n)), top_k - 1, axis=1)[:, :top_k]
        flat = (np.arange(m)[:, None] * n_regions + codes[subsets]).ravel()
        counts = np.bincount(flat, minlength=m * n_regions).reshape(m, n_regions)
        at_least += (counts >= observed).sum(axis=0)
        done += m
    return at_least


def region_importance(
    importance: Any, regions: Any, skip_labels: Sequence[str] = SKIP_LABELS
) -> pd.DataFrame:
    """Mean, median and sd of importance per region (neurons labelled `skip_labels` left out).

    Returns:
        One row per region sorted by mean (descending): region, n_neurons, mean, median, sd
        (sample sd; NaN for a one-neuron region).
    """
    importance, regions = _importance_and_regions(importance, regions)
    keep = ~np.isin(regions, list(skip_labels))
    frame = pd.DataFrame({"region": regions[keep], "importance": importance[keep]})
    table = frame.groupby("region")["importance"].agg(
        n_neurons="size", mean="mean", median="median", sd="std"
    )
    return table.reset_index().sort_values(
        ["mean", "region"], ascending=[False, True], ignore_index=True
    )
