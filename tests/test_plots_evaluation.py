"""Evaluation figures are written as a non-empty PNG and an SVG for each path stem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.plots import evaluation
from nlp4neuro.statistics import default_pairs, paired_comparisons

MODELS = ("gpt2", "gpt2_untrained", "lstm")
FISH = (9, 10, 11, 12, 13)


def summary_table(windows: tuple[int, ...] = (5, 10, 20)) -> pd.DataFrame:
    """A summarise()-shaped table with a known ordering: gpt2 < lstm < gpt2_untrained."""
    rng = np.random.default_rng(0)
    base = {"gpt2": 0.052, "gpt2_untrained": 0.060, "lstm": 0.055}
    rows = [
        {
            "model": model,
            "kind": "llm",
            "fish": fish,
            "window_frames": window,
            "window_s": window / 1.1,
            "split": "test",
            "metric": "rmse",
            "segment": "pooled",
            "value": base[model] + 0.002 * i + rng.normal(0, 0.001),
            "seed_sd": 0.001,
            "n_seeds": 3,
            "n_seeds_failed": 0,
        }
        for window in windows
        for model in MODELS
        for i, fish in enumerate(FISH)
    ]
    return pd.DataFrame(rows)


def predictions(model_offset: float, n_val: int = 5, n_test: int = 60) -> xr.Dataset:
    """Predictions of one fish (architecture.md contract) with a stimulus epoch in the test part."""
    n = n_val + n_test
    frame = np.arange(n)
    time = frame / 1.1
    true = 0.1 * np.sin(time[:, None] / 5 + np.arange(6)[None, :] * 0.3)
    stimulus = np.array([""] * n, dtype=object)
    stimulus[n_val + 10 : n_val + 25] = "forward"
    stimulus[n_val + 40 : n_val + 50] = "left"
    return xr.Dataset(
        {
            "predicted": (("time", "segment"), (true + model_offset).astype("f4")),
            "true": (("time", "segment"), true.astype("f4")),
        },
        coords={
            "time": ("time", time),
            "frame": ("time", frame),
            "split": ("time", np.array(["val"] * n_val + ["test"] * n_test)),
            "stimulus": ("time", stimulus.astype(str)),
            "segment": ("segment", [f"theta_{k:02d}" for k in range(6)]),
        },
        attrs={"model": "m", "kind": "llm", "fish": 9, "seed": 0, "fold": 0, "window_frames": 10},
    )


def assert_figure_files(paths: list[Path], stem: Path) -> None:
    assert paths == [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")]
    png, svg = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    assert svg.stat().st_size > 5_000 and b"<svg" in svg.read_bytes()[:2000]


def comparisons(summary: pd.DataFrame) -> pd.DataFrame:
    pairs = default_pairs(list(MODELS), {"gpt2": "gpt2_untrained"})
    return paired_comparisons(summary, pairs=pairs, alpha=0.05, n_bootstrap=200, seed=0)


def test_model_comparison_with_annotated_twins(tmp_path):
    summary = summary_table()
    stats = comparisons(summary)
    stem = tmp_path / "figures" / "model_comparison"
    paths = evaluation.plot_model_comparison(summary, stats, stem)
    assert_figure_files(paths, stem)
    svg = paths[1].read_bytes()
    # 5 fish: the table has a paired-t p but no Wilcoxon p (min p 0.0625), so only t is named.
    twins = stats[stats["contrast"] == "pretrained_vs_untrained"]
    assert twins["t_p_holm"].notna().all() and twins["wilcoxon_p_holm"].isna().all()
    assert b"paired t p" in svg and b"(n=5 fish)" in svg
    assert b"Wilcoxon" not in svg and b"n.t." not in svg
    # the effect size stands beside the p-values: Cohen's dz of each twin row of the table
    for dz in twins["cohens_dz"]:
        assert f"dz={dz:.2f} (n=5 fish)".encode() in svg


def test_model_comparison_draws_no_p_value_where_the_table_has_none(tmp_path):
    summary = summary_table(windows=(10,))
    stats = comparisons(summary)
    twin = stats["contrast"] == "pretrained_vs_untrained"
    # As statistics.csv reads where no test was possible: empty p-value cells.
    stats.loc[twin, ["t_p", "t_p_holm", "wilcoxon_p", "wilcoxon_p_holm"]] = np.nan
    paths = evaluation.plot_model_comparison(summary, stats, tmp_path / "untestable")
    svg = paths[1].read_bytes()
    assert b"no test (n=5 fish)" in svg
    assert b"p=" not in svg and b"p<" not in svg


def test_model_comparison_with_two_fish_names_no_test(tmp_path):
    # The defect of issue 13: with two fish a t-test was drawn ("paired t p=1.000 (n=2 fish)").
    summary = summary_table(windows=(10,))
    summary = summary[summary["fish"].isin(FISH[:2])]
    path = tmp_path / "statistics.csv"
    comparisons(summary).to_csv(path, index=False)
    stats = pd.read_csv(path)  # as the workflow reads it back
    assert stats["t_p"].isna().all() and (stats["t_min_fish"] == 3).all()
    paths = evaluation.plot_model_comparison(summary, stats, tmp_path / "two_fish")
    svg = paths[1].read_bytes()
    assert "no test: needs ≥ 3 fish (n=2 fish)".encode() in svg
    assert b"p=" not in svg and b"p<" not in svg and b"dz=" not in svg


def test_model_comparison_without_stats_and_one_window(tmp_path):
    stem = tmp_path / "one_window"
    assert_figure_files(
        evaluation.plot_model_comparison(summary_table(windows=(10,)), None, stem), stem
    )


def test_model_comparison_unknown_metric_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="metric/segment"):
        evaluation.plot_model_comparison(summary_table(), None, tmp_path / "x", metric="r2")


def test_predictions_figure_with_stimulus_epochs(tmp_path):
    stem = tmp_path / "predictions_fish9"
    paths = evaluation.plot_predictions(
        {"gpt2": predictions(0.01), "lstm": predictions(-0.02)}, stem
    )
    assert_figure_files(paths, stem)
    svg = paths[1].read_bytes()
    assert b"stimulus: forward" in svg and b"time (s)" in svg


def test_stimulus_epochs_from_coord_are_test_frames_only():
    ds = predictions(0.0)
    test = ds.isel(time=np.flatnonzero(ds["split"].values == "test"))
    epochs = evaluation._stimulus_epochs(test, None)
    # frames 15..29 and 45..54, each epoch ending one frame period (1/1.1 s) after its last frame
    assert list(epochs["stimulus"]) == ["forward", "left"]
    np.testing.assert_allclose(epochs["start_s"], [15 / 1.1, 45 / 1.1])
    np.testing.assert_allclose(epochs["stop_s"], [30 / 1.1, 55 / 1.1])


def test_predictions_of_different_fish_are_rejected(tmp_path):
    other = predictions(0.0)
    other.attrs["fish"] = 10
    with pytest.raises(ConfigError, match="one fish"):
        evaluation.plot_predictions({"a": predictions(0.0), "b": other}, tmp_path / "x")
    with pytest.raises(InputFileError, match="'true'"):
        evaluation.plot_predictions({"a": predictions(0.0).drop_vars("true")}, tmp_path / "x")


def curve_table(models=("gpt2", "lstm"), windows=(5, 10), fish=(9, 10), seeds=(0, 1)):
    epochs = np.arange(1, 11)
    rows = [
        pd.DataFrame(
            {
                "model": m,
                "window": w,
                "fish": f,
                "seed": s,
                "horizon": 0,
                "fold": 0,
                "epoch": epochs,
                "train_loss": 0.1 / epochs * (1 + f / 100),
                "val_loss": 0.12 / epochs**0.8,
            }
        )
        for m in models
        for w in windows
        for f in fish
        for s in seeds
    ]
    return pd.concat(rows, ignore_index=True)


def test_training_curves_one_panel_per_model_and_window(tmp_path):
    stem = tmp_path / "curves"
    paths = evaluation.plot_training_curves(curve_table(), stem)
    assert_figure_files(paths, stem)
    svg = paths[1].read_text()
    for title in ("gpt2, window 5", "gpt2, window 10", "lstm, window 5", "lstm, window 10"):
        assert title in svg
    # a model without a validation curve and a missing (model, window) cell still draw
    partial = curve_table(models=("ridge",), windows=(5,)).drop(columns="val_loss")
    mixed = pd.concat([curve_table(windows=(10,)), partial], ignore_index=True)
    assert "no runs" in evaluation.plot_training_curves(mixed, stem)[1].read_text()
    with pytest.raises(InputFileError, match="train_loss"):
        evaluation.plot_training_curves(curve_table().drop(columns="train_loss"), stem)


@pytest.mark.parametrize("windows", [(5, 10, 15, 20), (10,)])
def test_window_sweep(tmp_path, windows):
    stem = tmp_path / f"sweep_{len(windows)}"
    paths = evaluation.plot_window_sweep(summary_table(windows=windows), stem)
    assert_figure_files(paths, stem)
    assert b"window length (s)" in paths[1].read_bytes()


def test_metric_labels_have_units():
    assert evaluation.metric_label("rmse") == "RMSE (rad)"
    assert "ridge" in evaluation.metric_label("rmse_skill_vs_ridge")
