"""The paper's grid in miniature, end to end through the real SLURM profile.

config/paper.yaml is taken as it is and shrunk, never rewritten by hand: the same models (GPT-2
full and LoRA, BERT full and LoRA, the Llama-architecture DeepSeek head and LoRA models, LSTM,
reservoir, ridge, mean, every pretrained LLM with its untrained twin), the reference
preprocessing, the paper's raw layout and the download rule, but tiny random backbones of the
same architectures, two tiny fish served by a loopback Dataverse, one window, one seed, two
folds and one epoch. Fish 11 carries the paper's region table (functional_types_df.h5) and fish
10 has none, as in the published data: the run must finish with and without region labels.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from _workflow import ROOT, snakemake
from fixtures_dataverse import DOI, served, served_tree
from fixtures_ingest import write_paper_raw_fixture
from slurm_cluster import site_profile

from nlp4neuro.models import make_tiny_backbone

pytestmark = pytest.mark.e2e

PAPER = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
# hub id -> the architecture of the tiny stand-in
ARCHITECTURES = {
    "gpt2": "gpt2",
    "bert-base-uncased": "bert",
    "deepseek-ai/deepseek-coder-6.7b-base": "llama",
}
FISH = [10, 11]
ROIS_PER_PLANE = (14, 14, 12)
N_FRAMES = 150


def miniature_config(workdir: Path, server: str) -> dict:
    """config/paper.yaml with tiny sources, fish, grid and training; the structure unchanged."""
    config = copy.deepcopy(PAPER)
    config["fish"] = FISH
    config["download"].update(server=server, doi=DOI)
    config["decoding"].update(windows=[5], seeds=[0], folds=2)  # the paper's 5 folds, shrunk
    config["training"]["epochs"] = 1
    config["evaluation"]["n_bootstrap"] = 200
    config["saliency"].update(
        n_steps=4, top_k=10, n_permutations=100, deletion_ks=[2, 5], deletion_random_repeats=2
    )
    config["compute"].update(threads_llm=1, threads_baseline=1, mem_mb_llm=1500)
    for spec in config["models"].values():
        if spec["kind"] == "llm":
            spec["source"] = str(workdir / "backbones" / ARCHITECTURES[spec["source"]])
            spec["allow_download"] = False
            # 8/4-bit loading needs CUDA and bitsandbytes; the CPU test runs the same models
            # unquantised (test_models covers the quantisation paths that run without a GPU).
            spec.pop("quantization", None)
        if "hidden_size" in spec:
            spec["hidden_size"] = 16
    return config


def serve_root(root: Path) -> Path:
    """The published layout for the miniature fish: raw planes, and fish 11's region table."""
    for fish in FISH:
        write_paper_raw_fixture(
            root, fish=fish, rois_per_plane=ROIS_PER_PLANE, n_frames=N_FRAMES, seed=fish
        )
    n = sum(ROIS_PER_PLANE)
    planes = np.repeat(np.arange(len(ROIS_PER_PLANE)), ROIS_PER_PLANE)
    table = pd.DataFrame(
        {
            "neur_coords": [[float(i), float(i)] for i in range(n)],
            "plane": [str(p) for p in planes],
            "region": [("Hb", "Pt", None)[i % 3] for i in range(n)],
            "motor_corr": np.linspace(0, 1, n),
        }
    )
    path = root / "exp1-4_data" / "fish11" / "data" / "functional_types_df.h5"
    path.parent.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTables pickles the object columns
        table.to_hdf(path, key="df", mode="w")
    return root


@pytest.fixture(scope="module")
def miniature(slurm, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("paper_miniature")
    for arch in set(ARCHITECTURES.values()):
        make_tiny_backbone(workdir / "backbones" / arch, arch)
    profile = site_profile(workdir / "profile")
    common = ("--workflow-profile", str(profile), "--configfile", str(workdir / "config.yaml"))
    with served(served_tree(serve_root(tmp_path_factory.mktemp("dataverse")))) as fake:
        config = miniature_config(workdir, fake.url)
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        started = time.monotonic()
        result = snakemake(workdir, *common, timeout=1500, env=slurm.env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    # the README and docs/benchmarks.md quote this
    print(f"paper miniature through SLURM: {time.monotonic() - started:.0f} s")
    report = snakemake(workdir, *common, "--report", "report.zip", timeout=600, env=slurm.env)
    assert report.returncode == 0, report.stderr[-3000:]
    return workdir


def test_the_miniature_has_the_paper_grids_structure(tmp_path):
    config = miniature_config(tmp_path, "http://127.0.0.1:1")
    assert config["models"].keys() == PAPER["models"].keys()
    for name, spec in config["models"].items():
        changed = {k for k in spec.keys() | PAPER["models"][name].keys()
                   if spec.get(k) != PAPER["models"][name].get(k)}  # fmt: skip
        assert changed <= {"source", "allow_download", "quantization", "hidden_size"}, name
    for key in ("data", "preprocessing"):
        assert config[key] == PAPER[key]
    assert config["download"]["enabled"] and config["download"]["groups"] == ["raw", "annotations"]


def test_every_model_and_twin_is_scored_on_both_fish(miniature):
    summary = pd.read_csv(miniature / "results/evaluation/summary.csv")
    llms = [name for name, spec in PAPER["models"].items() if spec["kind"] == "llm"]
    expected = set(PAPER["models"]) | {f"{name}_untrained" for name in llms}
    assert set(summary["model"]) == expected
    assert set(summary["fish"].astype(str)) == {str(f) for f in FISH}
    statistics = pd.read_csv(miniature / "results/evaluation/statistics.csv")
    twins = statistics[statistics["contrast"] == "pretrained_vs_untrained"]
    assert set(twins["model_a"]) == set(llms)
    # two blocked folds per run, averaged within each fish
    assert (summary["n_folds"] == 2).all()
    metrics = pd.read_csv(miniature / "results/evaluation/metrics.csv")
    assert set(metrics["fold"]) == {0, 1}


def test_folds_test_every_model_on_the_same_disjoint_test_blocks(miniature):
    def test_frames(model: str, fold: int) -> np.ndarray:
        path = miniature / f"results/train/{model}/w5/fish10/seed0/h0/fold{fold}/predictions.nc"
        predictions = xr.load_dataset(path)
        return predictions["frame"].values[predictions["split"].values == "test"]

    for fold in (0, 1):
        reference = test_frames("ridge", fold)
        for model in ("gpt2_lora", "bert_full_untrained", "lstm", "mean"):
            np.testing.assert_array_equal(test_frames(model, fold), reference)
    first, second = test_frames("ridge", 0), test_frames("ridge", 1)
    assert first.max() < second.min()  # contiguous blocks in time order
    dataset = xr.load_dataset(miniature / "results/datasets/fish10.nc")
    np.testing.assert_array_equal(np.r_[first, second], dataset["frame"].values)  # every frame


def test_download_manifest_and_region_labels(miniature):
    manifest = json.loads((miniature / "resources/dataverse/manifest.json").read_text())
    assert "exp1-4_data/fish11/data/functional_types_df.h5" in manifest["files"]
    labelled = xr.load_dataset(miniature / "results/datasets/fish11.nc")
    unlabelled = xr.load_dataset(miniature / "results/datasets/fish10.nc")
    assert set(labelled["region"].values) == {"Hb", "Pt", ""}
    assert set(unlabelled["region"].values) == {""}


def test_saliency_summary_says_what_is_not_testable(miniature):
    consistency = pd.read_csv(miniature / "results/saliency/summary/consistency.csv")
    assert consistency["note"].str.contains("not testable").all()
    regions = pd.read_csv(miniature / "results/saliency/deepseek_head/w5/fish11/seed0/regions.csv")
    assert {"Hb", "Pt"} <= set(regions["region"])


def test_every_job_ran_on_the_cluster_and_the_report_is_a_zip(miniature):
    for log in (miniature / "logs").rglob("*.log"):
        if "slurm" in log.parts:
            continue
        assert "scheduler allocation: SLURM_JOB_ID=" in log.read_text(errors="replace"), log
    with zipfile.ZipFile(miniature / "report.zip") as archive:
        assert any(name.endswith("report.html") for name in archive.namelist())
