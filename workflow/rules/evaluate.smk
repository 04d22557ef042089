# Evaluation: test-split metrics, fish-level statistics and figures for the report.


rule score_predictions:
    input:
        predictions=all_predictions(),
    output:
        metrics=report(
            "results/evaluation/metrics.csv",
            caption="../report/metrics.rst",
            category="Evaluation",
            labels={"table": "all metrics"},
        ),
        summary=report(
            "results/evaluation/summary.csv",
            caption="../report/summary.rst",
            category="Evaluation",
            labels={"table": "fish summary"},
        ),
        skill="results/evaluation/skill.csv",
    log:
        "logs/evaluation/score_predictions.log",
    conda:
        "../../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        skill_references=config["evaluation"]["skill_references"],
        code=code_digest("score_predictions"),
    script:
        "../scripts/score_predictions.py"


rule compare_models:
    input:
        summary="results/evaluation/summary.csv",
    output:
        statistics=report(
            "results/evaluation/statistics.csv",
            caption="../report/statistics.rst",
            category="Evaluation",
            labels={"table": "statistics across fish"},
        ),
        # The report sorts categories by name: "0 Verdict" opens it.
        verdict=report(
            "results/evaluation/verdict.csv",
            caption="../report/verdict.rst",
            category="0 Verdict",
            labels={"table": "verdict: each pretrained model against its references"},
        ),
    log:
        "logs/evaluation/compare_models.log",
    conda:
        "../../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        untrained_twins=UNTRAINED_TWINS,
        ladders=LADDERS,
        alpha=config["evaluation"]["alpha"],
        n_bootstrap=config["evaluation"]["n_bootstrap"],
        seed=config["seed"],
        code=code_digest("compare_models"),
    script:
        "../scripts/compare_models.py"


rule plot_evaluation:
    input:
        summary="results/evaluation/summary.csv",
        statistics="results/evaluation/statistics.csv",
        curves=[f"{run_dir(*run)}/training_curve.csv" for run in all_runs()],
    output:
        comparison=report(
            "results/evaluation/figures/model_comparison.png",
            caption="../report/model_comparison.rst",
            category="Evaluation",
            labels={"figure": "model comparison"},
        ),
        windows=report(
            "results/evaluation/figures/window_sweep.png",
            caption="../report/window_sweep.rst",
            category="Evaluation",
            labels={"figure": "window sweep"},
        ),
        training_curves=report(
            "results/evaluation/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Evaluation",
            labels={"figure": "training curves"},
        ),
        convergence=report(
            "results/evaluation/convergence.csv",
            caption="../report/convergence.rst",
            category="Evaluation",
            labels={"table": "training convergence"},
        ),
    log:
        "logs/evaluation/plot_evaluation.log",
    conda:
        "../../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        runs=all_runs(),
        tolerance=config["evaluation"]["convergence_tolerance"],
        code=code_digest("plot_evaluation"),
    script:
        "../scripts/plot_evaluation.py"


rule plot_predictions:
    input:
        predictions=lambda wc: [
            f"{run_dir(m, WINDOWS[0], wc.fish, SEEDS[0], HORIZONS[0], FOLDS[0])}/predictions.nc"
            for m in MODELS
        ],
    output:
        figure=report(
            "results/evaluation/figures/predictions_fish{fish}.png",
            caption="../report/predictions.rst",
            category="Evaluation",
            subcategory="Predicted tail",
            labels={"figure": "predicted tail", "fish": "{fish}"},
        ),
    log:
        "logs/evaluation/plot_predictions_fish{fish}.log",
    conda:
        "../../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        models=list(MODELS),
        code=code_digest("plot_predictions"),
    script:
        "../scripts/plot_predictions.py"


rule tail_history:
    input:
        dataset="results/datasets/fish{fish}.nc",
    output:
        table="results/horizons/tail_history/w{window}/fish{fish}.csv",
    log:
        "logs/horizons/tail_history/w{window}/fish{fish}.log",
    conda:
        "../../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=config["compute"]["mem_mb_baseline"],
    params:
        decoding=config["decoding"],
        alphas=null_ridge_alphas(),
        code=code_digest("tail_history"),
    script:
        "../scripts/tail_history.py"


rule plot_horizons:
    input:
        summary="results/evaluation/summary.csv",
        null=null_outputs(),
        tail_history=expand(
            "results/horizons/tail_history/w{window}/fish{fish}.csv",
            window=WINDOWS,
            fish=FISH,
        ),
    output:
        table=report(
            "results/evaluation/horizons.csv",
            caption="../report/horizons.rst",
            category="Evaluation",
            labels={"table": "skill against horizon"},
        ),
        figure=report(
            "results/evaluation/figures/horizons.png",
            caption="../report/horizons.rst",
            category="Evaluation",
            labels={"figure": "skill against horizon"},
        ),
    log:
        "logs/evaluation/plot_horizons.log",
    conda:
        "../../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        horizons=HORIZONS,
        code=code_digest("plot_horizons"),
    script:
        "../scripts/plot_horizons.py"
