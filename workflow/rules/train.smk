# Decoders: prepare each pretrained backbone once, then train one model per fish, window and seed.


rule prepare_backbone:
    output:
        backbone=directory("resources/backbones/{backbone}"),
    log:
        "logs/prepare_backbone/{backbone}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        source=lambda wc: BACKBONES[wc.backbone],
        allow_download=lambda wc: any(
            MODELS[m]["allow_download"] for m in BACKBONE_MODELS[wc.backbone]
        ),
        config_key=lambda wc: f"models.{BACKBONE_MODELS[wc.backbone][0]}.source",
        code=code_digest("prepare_backbone"),
    script:
        "../scripts/prepare_backbone.py"


rule train_llm:
    input:
        dataset="results/datasets/fish{fish}.nc",
        backbone=lambda wc: f"resources/backbones/{backbone_key(MODELS[wc.model]['source'])}",
    output:
        predictions="results/train/{model}/w{window}/fish{fish}/seed{seed}/predictions.nc",
        curve="results/train/{model}/w{window}/fish{fish}/seed{seed}/training_curve.csv",
        model=directory("results/train/{model}/w{window}/fish{fish}/seed{seed}/model"),
    log:
        "logs/train/{model}/w{window}/fish{fish}/seed{seed}.log",
    wildcard_constraints:
        model=_alternation(LLM_MODELS),
    conda:
        "../../envs/torch.yaml"
    threads: config["compute"]["threads_llm"]
    resources:
        gpu=1,
        mem_mb=config["compute"]["mem_mb_llm"],
        runtime=config["compute"]["runtime_llm_min"],
    params:
        spec=lambda wc: MODELS[wc.model],
        training=lambda wc: model_training_params(wc.model),
        decoding=config["decoding"],
        compute=config["compute"],
        checkpoint_dir="results/checkpoints/{model}/w{window}/fish{fish}/seed{seed}",
        code=code_digest("train_decoder"),
    script:
        "../scripts/train_decoder.py"


rule train_baseline:
    input:
        dataset="results/datasets/fish{fish}.nc",
    output:
        predictions="results/train/{model}/w{window}/fish{fish}/seed{seed}/predictions.nc",
        curve="results/train/{model}/w{window}/fish{fish}/seed{seed}/training_curve.csv",
        model=directory("results/train/{model}/w{window}/fish{fish}/seed{seed}/model"),
    log:
        "logs/train/{model}/w{window}/fish{fish}/seed{seed}.log",
    wildcard_constraints:
        model=_alternation(BASELINE_MODELS),
    conda:
        "../../envs/torch.yaml"
    threads: config["compute"]["threads_baseline"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=lambda wc: MODELS[wc.model],
        training=lambda wc: model_training_params(wc.model),
        decoding=config["decoding"],
        compute=dict(config["compute"], device="cpu"),
        checkpoint_dir="results/checkpoints/{model}/w{window}/fish{fish}/seed{seed}",
        code=code_digest("train_decoder"),
    script:
        "../scripts/train_decoder.py"
