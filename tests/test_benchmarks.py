"""Tests for benchmarks/: case names, the grid's arithmetic (hand-computed), and both commands run
end to end on tiny shapes (figures are printed, never asserted: speed lives in the benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nlp4neuro.config import section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import grid  # noqa: E402
from training_case import TrainingCase, case_settings  # noqa: E402


def test_case_names_parse_and_print_back():
    case = TrainingCase.parse("gpt2:lora:bf16:dropout")
    assert (case.backbone, case.finetune, case.precision, case.dropout) == (
        "gpt2",
        "lora",
        "bf16",
        True,
    )
    assert case.name == "gpt2:lora:bf16:dropout"
    assert TrainingCase.parse("gpt2:full:fp32:reference").reference
    lstm = TrainingCase.parse("lstm:reference")
    assert (lstm.finetune, lstm.precision, lstm.is_llm) == ("full", "auto", False)
    for bad in ("gpt3:lora", "gpt2:lora:fp16", "gpt2:lora:fast", "gpt2"):
        with pytest.raises(ValueError, match="case"):
            TrainingCase.parse(bad)


def test_reference_and_dropout_settings():
    entry, training = case_settings(TrainingCase.parse("gpt2:full:reference"))
    assert entry["finetune"] == "full" and entry["backbone_dropout"] is None
    assert (training["weight_decay"], training["adam_epsilon"]) == (0.0, 1e-6)
    entry, training = case_settings(TrainingCase.parse("lstm:reference"))
    assert entry["kind"] == "lstm" and training["adam_epsilon"] == 1e-8
    entry, _ = case_settings(TrainingCase.parse("gpt2:lora:dropout"))
    assert (entry["backbone_dropout"], entry["lora_dropout"]) == (None, 0.05)
    entry, _ = case_settings(TrainingCase.parse("gpt2:lora"))
    assert entry == {"kind": "llm", "source": "gpt2", "finetune": "lora"}  # schema: no dropout


def test_job_seconds_by_hand():
    # step 2 s of which forward 0.5 s; 3 epochs of ceil(25/10) = 3 steps -> 18 s; validation
    # 3 x ceil(5/10) = 3 passes plus ceil(15/10) = 2 held-out passes -> 5 x 0.5 s = 2.5 s.
    measured = {"step_seconds_mean": 2.0, "phase_fraction": {"forward": 0.25}}
    training = {"epochs": 3, "batch_size": 10}
    windows = {"train": 25, "val": 5, "test": 10}
    assert grid.job_seconds(measured, training, windows, 1.0) == pytest.approx(20.5)
    assert grid.job_seconds(measured, training, windows, 0.5) == pytest.approx(10.25)


def test_split_windows_and_disk_by_hand():
    config = {"decoding": section("decoding", windows=[10], gap_frames=None)}
    # gap = longest window 10 + ceil(5.4 s x 1.0 Hz) = 16 frames; 1000 frames less two gaps
    # leave 968: train floor(0.7 x 968) = 677 frames, val 774 - 677 = 97, test 194; windows of
    # 10 at stride 1: 668, 88 and 185.
    assert grid.split_windows(config, 1000, 10, 1.0) == [{"train": 668, "val": 88, "test": 185}]
    # decoding up to 6 frames ahead drops the first 6 frames for every horizon: 1006 frames
    # give the same 1000 target frames and the same gap
    config["decoding"] = section("decoding", windows=[10], gap_frames=None, horizons=[0, 6])
    assert grid.split_windows(config, 1006, 10, 1.0) == [{"train": 668, "val": 88, "test": 185}]
    config["decoding"] = section("decoding", windows=[10], gap_frames=5, folds=5)
    # 5 folds of 200 frames, val 100 frames, gap 5. Fold 0: test 0-199, val 205-304, train
    # 310-999 (690 frames); fold 2: test 400-599, val 295-394, train 0-289 and 605-999.
    counts = grid.split_windows(config, 1000, 10, 1.0)
    assert counts[0] == {"train": 681, "val": 91, "test": 191}
    assert counts[2] == {"train": 281 + 386, "val": 91, "test": 191}
    assert len(counts) == 5
    lora = {"kind": "llm", "finetune": "lora"}
    full = {"kind": "llm", "finetune": "full"}
    measured = {"trainable_params": 100, "total_params": 1000}
    windows = {"val": 3, "test": 7}
    assert grid.disk_bytes(lora, measured, windows) == 400 + 10 * (48 + 40)
    assert grid.disk_bytes(full, measured, windows) == 4000 + 10 * (48 + 40)


def test_cost_key_merges_twins_and_keeps_what_costs():
    pretrained = {"kind": "llm", "source": "gpt2", "finetune": "lora", "rung": "none"}
    twin = {**pretrained, "pretrained": False, "rung": "untrained", "twin_of": "gpt2_lora"}
    assert grid.cost_key(pretrained) == grid.cost_key(twin)
    assert grid.cost_key(pretrained) != grid.cost_key({**pretrained, "finetune": "full"})
    assert grid.cost_key(pretrained) != grid.cost_key({**pretrained, "training": {"batch_size": 8}})
    assert grid.measurable({"kind": "llm", "source": "gpt2", "quantization": "8bit"}, False)
    assert grid.measurable({"kind": "llm", "source": "org/other-model"}, False)
    assert grid.measurable({"kind": "llm", "source": "gpt2"}, False) is None


def run_benchmark(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_training_benchmark_runs_end_to_end(tmp_path):
    run_benchmark(
        "training",
        "--cases", "lstm:reference", "lstm:bf16",
        "--neurons", "40", "--frames", "300", "--window", "5", "--batch", "4",
        "--warmup", "1", "--steps", "2", "--threads", "1", "--profile",
        "--out", str(tmp_path),
    )  # fmt: skip
    report = json.loads((tmp_path / "training.json").read_text())
    first, second = report["results"]
    assert (first["case"], first["precision"]) == ("lstm:reference", "fp32")
    assert second["precision"] == "bf16"  # an explicit choice, whatever the hardware
    assert first["speed_vs_first"] == 1.0 and first["rss_vs_first"] == 1.0
    assert first["windows_per_s"] > 0 and first["top_ops"]
    assert sum(first["phase_fraction"].values()) == pytest.approx(1.0)
    assert {"fp32", "bf16"} <= set(report["matmul_peak_flops"])


def test_grid_benchmark_counts_every_job_of_a_config(tmp_path):
    config = {
        "fish": [1, 2, 3],
        "simulation": {"n_neurons": 60, "n_frames": 200},
        "decoding": {"windows": [5, 10], "seeds": [0, 1]},
        "training": {"epochs": 2, "batch_size": 8},
        "models": {
            "lstm": {"kind": "lstm", "hidden_size": 16},
            "reservoir": {"kind": "reservoir", "hidden_size": 16},
            "ridge": {"kind": "ridge"},
            "mean": {"kind": "mean"},
            "big": {"kind": "llm", "source": "org/not-offline", "finetune": "lora"},
            "minilm": {"kind": "llm", "source": "bundled:minilm", "finetune": "lora"},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_benchmark(
        "grid", "--configfile", str(path), "--steps", "1", "--warmup", "0", "--threads", "1",
        "--out", str(tmp_path),
    )  # fmt: skip
    report = json.loads((tmp_path / "grid.json").read_text())
    rows = {r["model"]: r for r in report["rows"]}
    assert all(r["jobs"] == 3 * 2 * 2 for r in rows.values())
    assert "not buildable offline" in rows["big"]["not_measured"]
    assert "not buildable offline" in rows["big_untrained"]["not_measured"]  # its twin
    lstm = rows["lstm"]
    assert lstm["cpu_hours"] == pytest.approx(lstm["wall_hours"] * lstm["threads"])
    assert lstm["wall_hours"] > 0 and lstm["gpu_hours"] is None
    assert rows["mean"]["wall_hours"] == 0
    assert rows["reservoir"]["wall_hours"] > 0
    # a bundled backbone is measured once for the model and its twin (the same cost)
    assert rows["minilm"]["wall_hours"] > 0 and rows["minilm"]["precision"] in ("fp32", "bf16")
    assert rows["minilm_untrained"]["wall_hours"] == rows["minilm"]["wall_hours"]
    assert report["totals"]["jobs"] == 6 * 12 + 2 * 12  # six models, two twins
    assert report["totals"]["jobs_not_measured"] == 24
    assert "total: 96 training jobs (24 not measured here)" in done.stdout


def test_precision_benchmark_pairs_fp32_and_bf16_workflow_runs(tmp_path):
    """The real workflow twice on a tiny synthetic fish; the pairs are the runs' own numbers."""
    config = {
        "fish": [1, 2],
        "simulation": {"n_neurons": 40, "n_frames": 200},
        "decoding": {"windows": [5, 10], "seeds": [0, 1, 2]},
        "training": {"epochs": 1, "batch_size": 16},
        "models": {"lstm": {"kind": "lstm", "hidden_size": 8}, "ridge": {"kind": "ridge"}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    run_benchmark(
        "precision", "--configfile", str(path), "--models", "lstm", "--seeds", "2",
        "--window", "5", "--cores", "2", "--out", str(tmp_path),
    )  # fmt: skip
    report = json.loads((tmp_path / "precision.json").read_text())
    assert report["n"] == 2  # the first fish only, two seeds, one window
    for pair, seed in zip(report["pairs"], (0, 1), strict=True):
        assert pair["run"] == f"lstm/w5/fish1/seed{seed}/h0/fold0"
        assert (pair["fp32"]["precision"], pair["bf16"]["precision"]) == ("fp32", "bf16")
        run = tmp_path / "precision" / "bf16" / "results/train" / pair["run"] / "run.json"
        assert json.loads(run.read_text())["summary"]["test_rmse"] == pair["bf16"]["test_rmse"]
        expected = pair["bf16"]["test_rmse"] - pair["fp32"]["test_rmse"]
        assert pair["difference"] == pytest.approx(expected)
    mean = sum(p["difference"] for p in report["pairs"]) / 2
    assert report["mean_difference"] == pytest.approx(mean)
