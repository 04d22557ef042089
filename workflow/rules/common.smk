# Config validation, wildcard constraints and the small helpers that derive the DAG from the config.
# Nothing here reads files made by the workflow, so dry runs always work.
import os
import re
import shutil
import sys
from pathlib import Path

SRC_DIR = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC_DIR))

from nlp4neuro import codedigest
from nlp4neuro.config import default_value, validate_config
from nlp4neuro.errors import ConfigError
from nlp4neuro.ladder import expand_models, rungs_of

# The schema (src/nlp4neuro/config.schema.yaml) holds every default; a bad key stops here.
_validated = validate_config(config)
config.clear()
config.update(_validated)


def _check(condition, key, expected, found):
    """Stop while the workflow is planned, naming the config key: on a cluster a late error
    costs hours."""
    if not condition:
        raise ConfigError(key, expected, found)


# The configured models plus the ablation rungs of every pretrained llm (nlp4neuro.ladder).
MODELS = expand_models(config["models"])
FISH = [str(f) for f in config["fish"]]
_check(
    len(set(FISH)) == len(FISH),
    "fish",
    "identifiers that stay distinct when written as text (they name folders and files)",
    config["fish"],
)
for _fish in FISH:
    _check(
        re.fullmatch(r"[A-Za-z0-9_.-]+", _fish),
        "fish",
        "identifiers of letters, digits, '.', '_' and '-'",
        _fish,
    )
WINDOWS = config["decoding"]["windows"]
SEEDS = config["decoding"]["seeds"]
# blocked cross-validation: one training job per fold (nlp4neuro.problem.fold_segments)
FOLDS = list(range(config["decoding"]["folds"]))
# decoding ahead: one training job per horizon (nlp4neuro.problem.lag_neural); the smallest
# horizon feeds the statistics, verdict, saliency and prediction figures
HORIZONS = sorted(config["decoding"]["horizons"])
_shuffled = [name for name, spec in MODELS.items() if spec["rung"] == "timeshuffled"]
_check(
    max(HORIZONS) == 0 or not _shuffled,
    "decoding.horizons",
    f"[0] with the time-shuffled rung {_shuffled} (its shuffle moves later frames before "
    "earlier ones; drop 'timeshuffled' from the ladder to decode ahead)",
    HORIZONS,
)
# pretrained model -> {rung: model}, e.g. {"smollm2": {"untrained": "smollm2_untrained"}}
LADDERS = rungs_of(MODELS)
# pretrained model -> its untrained twin
UNTRAINED_TWINS = {p: r["untrained"] for p, r in LADDERS.items() if "untrained" in r}
LLM_MODELS = [name for name, spec in MODELS.items() if spec["kind"] == "llm"]
BASELINE_MODELS = [name for name in MODELS if name not in LLM_MODELS]

_fractions = sum(
    config["decoding"][f"{part}_fraction"] for part in ("train", "val", "test")
)
_check(
    abs(_fractions - 1.0) < 1e-9,
    "decoding.*_fraction",
    "train + val + test fractions summing to 1",
    _fractions,
)


def code_digest(script):
    """Digest of the package code a rule's script imports (transitively), as a rerun trigger.

    Snakemake reruns a job when its params change but not when imported code changes; the
    modules are found from the imports themselves (nlp4neuro.codedigest), never listed here.
    """
    path = Path(workflow.basedir) / "workflow" / "scripts" / f"{script}.py"
    return codedigest.code_digest(path, SRC_DIR)


def _alternation(names):
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "^$"


wildcard_constraints:
    fish=_alternation(FISH),
    window=r"\d+",
    seed=r"\d+",
    fold=r"\d+",
    horizon=r"\d+",


def backbone_key(source):
    """A folder name for a model source: one prepared backbone per distinct source."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", source).strip("-")


# prepared backbone folder -> the models that use it (one folder per distinct source)
BACKBONE_MODELS = {}
for _model in LLM_MODELS:
    BACKBONE_MODELS.setdefault(backbone_key(MODELS[_model]["source"]), []).append(
        _model
    )
BACKBONES = {
    key: MODELS[models[0]]["source"] for key, models in BACKBONE_MODELS.items()
}


def raw_fish_dir(fish):
    return f"{config['data']['raw_dir']}/{config['data']['fish_dir'].format(fish=fish)}"


if config["data"]["source"] != "synthetic" and not config["download"]["enabled"]:
    _missing = [raw_fish_dir(f) for f in FISH if not Path(raw_fish_dir(f)).exists()]
    _check(
        not _missing,
        "data.raw_dir",
        "the raw data of every configured fish (or download.enabled: true)",
        f"no {_missing[0] if _missing else ''} in {Path.cwd()}",
    )


def get_raw_input(wildcards):
    """The fish's raw folder or file (made by the simulator, downloaded, or the user's own).

    Downloaded files are represented by the manifest that lists them with their checksums; a
    user's region table outside the fish folder is an input when it exists, so editing it
    reruns the ingest.
    """
    inputs = {"raw": raw_fish_dir(wildcards.fish)}
    if config["download"]["enabled"]:
        inputs["manifest"] = f"{config['download']['out_dir']}/manifest.json"
    regions = config["data"]["functional_types_file"]
    if regions and not config["download"]["enabled"]:
        path = Path(
            os.path.normpath(Path(inputs["raw"]) / regions.format(fish=wildcards.fish))
        )
        if path.exists():
            inputs["functional_types"] = str(path)
    return inputs


_check(
    config["data"]["source"] != "prepared" or config["preprocessing"]["mode"] == "raw",
    "preprocessing.mode",
    "raw with data.source prepared (the prepared matrices are already normalised)",
    config["preprocessing"]["mode"],
)
_check(
    not config["download"]["enabled"]
    or config["data"]["raw_dir"] == config["download"]["out_dir"],
    "data.raw_dir",
    f"download.out_dir ({config['download']['out_dir']}) when download.enabled",
    config["data"]["raw_dir"],
)


def run_dir(model, window, fish, seed, horizon, fold):
    return (
        f"results/train/{model}/w{window}/fish{fish}/seed{seed}/h{horizon}/fold{fold}"
    )


def all_runs(models=None, folds=None, horizons=None):
    """(model, window, fish, seed, horizon, fold) of every training job."""
    models = MODELS if models is None else models
    folds = FOLDS if folds is None else folds
    horizons = HORIZONS if horizons is None else horizons
    return [
        (m, w, f, s, h, k)
        for m in models
        for w in WINDOWS
        for f in FISH
        for s in SEEDS
        for h in horizons
        for k in folds
    ]


def all_predictions(models=None):
    return [f"{run_dir(*run)}/predictions.nc" for run in all_runs(models)]


def model_training_params(model):
    """Global training settings with the model's own overrides on top."""
    return {**config["training"], **MODELS[model].get("training", {})}


def get_train_inputs(wildcards):
    """The fish's dataset; for an llm model also its prepared backbone."""
    inputs = {"dataset": f"results/datasets/fish{wildcards.fish}.nc"}
    spec = MODELS[wildcards.model]
    if spec["kind"] == "llm":
        inputs["backbone"] = f"resources/backbones/{backbone_key(spec['source'])}"
    return inputs


def train_compute(model, key):
    """A training job's compute setting for its model's kind, e.g. `mem_mb_{kind}` is
    compute.mem_mb_llm for llm models and compute.mem_mb_baseline for the others."""
    kind = "llm" if MODELS[model]["kind"] == "llm" else "baseline"
    return config["compute"][key.format(kind=kind)]


def model_gpus(model):
    """LLM jobs (training, saliency) ask the scheduler for one GPU; the others for none."""
    return int(MODELS[model]["kind"] == "llm")


def saliency_models():
    """The models to explain: by default every pretrained llm and its untrained twin (the other
    rungs of the ladder are decoding controls, not maps to read)."""
    chosen = config["saliency"]["models"]
    if chosen is None:
        return [m for m in LLM_MODELS if MODELS[m]["rung"] in ("none", "untrained")]
    for name in chosen:
        _check(name in MODELS, "saliency.models", f"one of {sorted(MODELS)}", name)
        _check(
            MODELS[name]["kind"] not in ("ridge", "mean"),
            "saliency.models",
            "a gradient-trained model",
            name,
        )
    return list(chosen)


def saliency_dir(model, window, fish, seed):
    return f"results/saliency/{model}/w{window}/fish{fish}/seed{seed}"


def saliency_runs():
    """(model, window, fish, seed) of every map: the decoders of the first fold at the
    smallest horizon are explained."""
    runs = all_runs(saliency_models(), folds=FOLDS[:1], horizons=HORIZONS[:1])
    return [run[:4] for run in runs]


def explained_run_dir(model, window, fish, seed):
    """The training run a saliency map explains: the first fold at the smallest horizon."""
    return run_dir(model, window, fish, seed, HORIZONS[0], FOLDS[0])


def get_explain_inputs(wildcards):
    run = explained_run_dir(
        wildcards.model, wildcards.window, wildcards.fish, wildcards.seed
    )
    inputs = {
        "dataset": f"results/datasets/fish{wildcards.fish}.nc",
        "model": f"{run}/model",
        "predictions": f"{run}/predictions.nc",
    }
    spec = MODELS[wildcards.model]
    if spec["kind"] == "llm":
        inputs["backbone"] = f"resources/backbones/{backbone_key(spec['source'])}"
    if config["data"]["source"] == "synthetic":
        inputs["raw"] = raw_fish_dir(wildcards.fish)
    return inputs


def atlas_inputs():
    atlas = config["saliency"]["atlas"]
    files = [atlas[key] for key in ("path", "labels") if atlas.get(key)]
    if isinstance(atlas.get("affine"), str):
        files.append(atlas["affine"])
    return files


def null_ridge_alphas():
    """The penalties of the first configured ridge model (the baseline the null is for), else
    the schema's default."""
    ridges = [spec for spec in MODELS.values() if spec["kind"] == "ridge"]
    if ridges:
        return ridges[0]["ridge_alphas"]
    return default_value("models", "*", "ridge_alphas")


def null_outputs():
    """The null table, when null_distribution is enabled for ridge."""
    settings = config["null_distribution"]
    if settings["enabled"] and "ridge" in settings["models"]:
        return ["results/evaluation/null.csv"]
    return []


def get_final_outputs():
    outputs = expand("results/datasets/fish{fish}.nc", fish=FISH)
    outputs += all_predictions()
    outputs += [
        "results/evaluation/metrics.csv",
        "results/evaluation/statistics.csv",
        "results/evaluation/verdict.csv",
        "results/evaluation/figures/model_comparison.png",
    ]
    outputs += expand(
        "results/evaluation/figures/predictions_fish{fish}.png", fish=FISH
    )
    outputs += null_outputs()
    if len(HORIZONS) > 1:
        outputs += [
            "results/evaluation/horizons.csv",
            "results/evaluation/figures/horizons.png",
        ]
    if config["saliency"]["enabled"] and saliency_models():
        outputs += ["results/saliency/summary/regions.csv"]
        outputs += expand(
            "results/saliency/summary/region_importance_{model}.png",
            model=saliency_models(),
        )
    return outputs


def check_scheduler_tools():
    """Before any job starts: the SLURM executor needs SLURM's client commands on PATH.

    The executor is only known once the workflow starts (not while the Snakefile is read), so
    this runs from `onstart`.
    """
    plugin = workflow.executor_plugin
    if plugin is not None and plugin.name == "slurm" and shutil.which("sbatch") is None:
        raise SystemExit(
            "executor slurm (profiles/slurm): expected SLURM's sbatch on PATH, found none; "
            "run from a cluster login node, or use the workstation profile (profiles/default)"
        )
