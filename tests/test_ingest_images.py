"""Tests for nlp4neuro.ingest.images: plane mean images (TIFF named .jpg, JPEG, PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlp4neuro.errors import InputFileError
from nlp4neuro.ingest.images import read_plane_images


def test_read_plane_images_tiff_named_jpg_and_real_png(tmp_path: Path) -> None:
    import matplotlib.image
    import tifffile

    tiff = np.arange(12, dtype=np.uint16).reshape(3, 4)
    tifffile.imwrite(tmp_path / "plane_0.jpg", tiff)  # what the paper ships: TIFF named .jpg
    rgb = np.zeros((5, 6, 3), dtype=np.uint8)
    rgb[..., :] = 90
    matplotlib.image.imsave(tmp_path / "plane_1.png", rgb)
    (tmp_path / "notes.txt").write_text("ignored")
    images = read_plane_images(tmp_path)
    assert sorted(images) == [0, 1]
    np.testing.assert_array_equal(images[0], tiff)
    assert images[1].shape == (5, 6)
    np.testing.assert_allclose(images[1], 90 / 255, atol=1e-6)


def test_read_plane_images_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"no such directory"):
        read_plane_images(tmp_path / "absent")
    with pytest.raises(InputFileError, match=r"plane_<k>.jpg"):
        read_plane_images(tmp_path)
    (tmp_path / "plane_0.jpg").write_bytes(b"not an image")
    with pytest.raises(InputFileError, match=r"plane_0.jpg: expected a TIFF, JPEG or PNG"):
        read_plane_images(tmp_path)
    (tmp_path / "plane0.tif").write_bytes(b"x")
    with pytest.raises(InputFileError, match=r"one image per plane"):
        read_plane_images(tmp_path)
