# Saliency: which neurons and brain regions each trained decoder relies on.


rule explain_decoder:
    input:
        # dataset, model/, predictions.nc; the backbone for llm; the raw fish for synthetic data
        unpack(get_explain_inputs),
        run_info=lambda wc: f"{explained_run_dir(wc.model, wc.window, wc.fish, wc.seed)}/run.json",
        problem=lambda wc: f"{explained_run_dir(wc.model, wc.window, wc.fish, wc.seed)}/problem.json",
        atlas=atlas_inputs(),
    output:
        importance="results/saliency/{model}/w{window}/fish{fish}/seed{seed}/importance.nc",
        regions="results/saliency/{model}/w{window}/fish{fish}/seed{seed}/regions.csv",
        deletion="results/saliency/{model}/w{window}/fish{fish}/seed{seed}/deletion.csv",
        scores="results/saliency/{model}/w{window}/fish{fish}/seed{seed}/scores.json",
    log:
        "logs/saliency/{model}/w{window}/fish{fish}/seed{seed}.log",
    wildcard_constraints:
        model=_alternation(list(MODELS)),
    conda:
        "../../envs/torch.yaml"
    threads: config["compute"]["threads_llm"]
    resources:
        gpu=lambda wc: model_gpus(wc.model),
        mem_mb=config["compute"]["mem_mb_llm"],
        runtime=config["compute"]["runtime_llm_min"],
    params:
        spec=lambda wc: MODELS[wc.model],
        saliency=config["saliency"],
        compute=config["compute"],
        code=code_digest("explain_decoder"),
    script:
        "../scripts/explain_decoder.py"


rule plot_brain_maps:
    input:
        importance="results/saliency/{model}/w{window}/fish{fish}/seed{seed}/importance.nc",
        dataset="results/datasets/fish{fish}.nc",
    output:
        brain_map=report(
            "results/saliency/{model}/w{window}/fish{fish}/seed{seed}/brain_map.png",
            caption="../report/brain_map.rst",
            category="Saliency",
            subcategory="Brain maps",
            labels={
                "model": "{model}",
                "fish": "{fish}",
                "window": "{window}",
                "seed": "{seed}",
            },
        ),
        turn_maps=report(
            "results/saliency/{model}/w{window}/fish{fish}/seed{seed}/turn_maps.png",
            caption="../report/turn_maps.rst",
            category="Saliency",
            subcategory="Left vs right turns",
            labels={
                "model": "{model}",
                "fish": "{fish}",
                "window": "{window}",
                "seed": "{seed}",
            },
        ),
    log:
        "logs/saliency/plot_brain_maps/{model}_w{window}_fish{fish}_seed{seed}.log",
    # The report shows the maps of the first seed (every map stays on disk): the paper's grid
    # would otherwise embed over a thousand of them.
    wildcard_constraints:
        seed=str(SEEDS[0]),
    conda:
        "../../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        top_k=config["saliency"]["top_k"],
        code=code_digest("plot_brain_maps"),
    script:
        "../scripts/plot_brain_maps.py"


# The maps of the other seeds: the same job, not in the report.
use rule plot_brain_maps as plot_brain_maps_other_seeds with:
    output:
        brain_map="results/saliency/{model}/w{window}/fish{fish}/seed{seed}/brain_map.png",
        turn_maps="results/saliency/{model}/w{window}/fish{fish}/seed{seed}/turn_maps.png",
    wildcard_constraints:
        seed=_alternation([str(s) for s in SEEDS[1:]]),


rule summarise_saliency:
    input:
        importance=[f"{saliency_dir(*run)}/importance.nc" for run in saliency_runs()],
        regions=[f"{saliency_dir(*run)}/regions.csv" for run in saliency_runs()],
        deletion=[f"{saliency_dir(*run)}/deletion.csv" for run in saliency_runs()],
        scores=[f"{saliency_dir(*run)}/scores.json" for run in saliency_runs()],
        brain_maps=[f"{saliency_dir(*run)}/brain_map.png" for run in saliency_runs()],
    output:
        regions=report(
            "results/saliency/summary/regions.csv",
            caption="../report/saliency_regions.rst",
            category="Saliency",
            labels={"table": "region enrichment"},
        ),
        consistency=report(
            "results/saliency/summary/consistency.csv",
            caption="../report/saliency_consistency.rst",
            category="Saliency",
            labels={"table": "cross-fish consistency"},
        ),
        controls=report(
            "results/saliency/summary/controls.csv",
            caption="../report/saliency_controls.rst",
            category="Saliency",
            labels={"table": "controls and ground truth"},
        ),
        controls_by_model=report(
            "results/saliency/summary/controls_by_model.csv",
            caption="../report/saliency_controls.rst",
            category="Saliency",
            labels={"table": "controls by model"},
        ),
        deletion_figure=report(
            "results/saliency/summary/deletion_curves.png",
            caption="../report/deletion_curves.rst",
            category="Saliency",
            labels={"figure": "deletion curves"},
        ),
    log:
        "logs/saliency/summarise_saliency.log",
    conda:
        "../../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        runs=saliency_runs(),
        untrained_twins=UNTRAINED_TWINS,
        top_k=config["saliency"]["top_k"],
        code=code_digest("summarise_saliency"),
    script:
        "../scripts/summarise_saliency.py"


rule plot_region_importance:
    input:
        regions=lambda wc: [
            f"{saliency_dir(wc.model, WINDOWS[0], fish, SEEDS[0])}/regions.csv"
            for fish in FISH
        ],
    output:
        figure=report(
            "results/saliency/summary/region_importance_{model}.png",
            caption="../report/region_importance.rst",
            category="Saliency",
            subcategory="Regions",
            labels={"figure": "region importance", "model": "{model}"},
        ),
    log:
        "logs/saliency/plot_region_importance_{model}.log",
    conda:
        "../../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        fish=FISH,
        code=code_digest("plot_region_importance"),
    script:
        "../scripts/plot_region_importance.py"
