# Chance level of decoding skill: ridge refitted after circular shifts of the neurons against the
# tail, per fish and window (nlp4neuro.null), gathered into one table beside the metrics.


rule null_distribution:
    input:
        dataset="results/datasets/fish{fish}.nc",
    output:
        shifts="results/null/ridge/w{window}/fish{fish}.csv",
        summary="results/null/ridge/w{window}/fish{fish}_summary.csv",
    log:
        "logs/null/ridge/w{window}/fish{fish}.log",
    conda:
        "../../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=config["compute"]["mem_mb_baseline"],
        runtime=config["compute"]["runtime_baseline_min"],
    params:
        null=config["null_distribution"],
        decoding=config["decoding"],
        seed=config["seed"],
        alphas=null_ridge_alphas(),
        code=code_digest("null_distribution"),
    script:
        "../scripts/null_distribution.py"


rule summarise_null:
    input:
        summaries=expand(
            "results/null/ridge/w{window}/fish{fish}_summary.csv",
            window=WINDOWS,
            fish=FISH,
        ),
    output:
        table=report(
            "results/evaluation/null.csv",
            caption="../report/null.rst",
            category="Evaluation",
            labels={"table": "null distributions"},
        ),
    log:
        "logs/null/summarise_null.log",
    conda:
        "../../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        code=code_digest("summarise_null"),
    script:
        "../scripts/summarise_null.py"
