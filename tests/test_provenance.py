"""Provenance helpers: atomic JSON writing."""

import json

import numpy as np

from nlp4neuro.provenance import write_json


def test_write_json_is_sorted_indented_and_takes_numpy(tmp_path):
    path = write_json(tmp_path / "run.json", {"b": np.float32(0.5), "a": np.arange(2)}, indent=1)
    text = path.read_text()
    assert text == '{\n "a": [\n  0,\n  1\n ],\n "b": 0.5\n}\n'
    assert json.loads(text) == {"a": [0, 1], "b": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary left
