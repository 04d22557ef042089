"""Plane mean images (brain-map backgrounds), e.g. the paper's ``images/plane_{k}.jpg``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from nlp4neuro.errors import InputFileError

_PLANE_IMAGE = re.compile(r"^plane_?(\d+)\.(jpe?g|tiff?|png)$", re.IGNORECASE)


def _plane_image_files(folder: Path) -> dict[int, Path]:
    """{plane: file} of the ``plane_{k}.jpg/.tif/.png`` files in `folder`, one per plane."""
    if not folder.is_dir():
        raise InputFileError(folder, "a folder of plane images", "no such directory")
    found: dict[int, Path] = {}
    for child in sorted(folder.iterdir()):
        match = _PLANE_IMAGE.match(child.name)
        if match is None or not child.is_file():
            continue
        k = int(match.group(1))
        if k in found:
            raise InputFileError(folder, "one image per plane", f"{found[k].name} and {child.name}")
        found[k] = child
    if not found:
        raise InputFileError(
            folder,
            "plane_<k>.jpg/.tif/.png images",
            f"entries {sorted(p.name for p in folder.iterdir())[:10]}",
        )
    return found


def _read_image(path: Path) -> np.ndarray:
    """A 2-D grey image: TIFF first (whatever the suffix), else JPEG/PNG; RGB(A) averaged."""
    import matplotlib.image
    import tifffile

    try:
        image = tifffile.imread(path)
    except (tifffile.TiffFileError, ValueError):
        try:
            image = matplotlib.image.imread(path)
        except (OSError, ValueError, SyntaxError) as err:
            raise InputFileError(
                path, "a TIFF, JPEG or PNG image", f"{type(err).__name__}: {err}"
            ) from err
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3].mean(axis=-1)
    if image.ndim != 2:
        raise InputFileError(path, "a 2-D grey image", f"shape {image.shape}")
    return image


def read_plane_images(folder: str | Path) -> dict[int, np.ndarray]:
    """Plane mean images ``plane_{k}.jpg`` (or .tif/.png) of a fish, keyed by plane index.

    The paper's ``images/plane_{k}.jpg`` are really TIFF files: each is read with tifffile
    first, and with matplotlib's reader (real JPEG/PNG through Pillow) when it is not a TIFF.

    Returns:
        {plane: image} with each image 2-D (rows, columns) in its stored dtype; RGB(A) images
        are reduced to their channel mean (grey levels) so every background is 2-D.

    Raises:
        InputFileError: no plane image in the folder, two files for one plane, or an image that
        neither reader understands.
    """
    found = _plane_image_files(Path(folder))
    return {k: _read_image(found[k]) for k in sorted(found)}
