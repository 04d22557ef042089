# Decoders: prepare each pretrained backbone once, then train one model per fish, window, seed,
# horizon and fold.


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


rule train_decoder:
    input:
        unpack(get_train_inputs),
    output:
        predictions="results/train/{model}/w{window}/fish{fish}/seed{seed}/h{horizon}/fold{fold}/predictions.nc",
        curve="results/train/{model}/w{window}/fish{fish}/seed{seed}/h{horizon}/fold{fold}/training_curve.csv",
        model=directory(
            "results/train/{model}/w{window}/fish{fish}/seed{seed}/h{horizon}/fold{fold}/model"
        ),
        run_info="results/train/{model}/w{window}/fish{fish}/seed{seed}/h{horizon}/fold{fold}/run.json",
        problem="results/train/{model}/w{window}/fish{fish}/seed{seed}/h{horizon}/fold{fold}/problem.json",
    log:
        "logs/train/{model}/w{window}/fish{fish}/seed{seed}/h{horizon}/fold{fold}.log",
    wildcard_constraints:
        model=_alternation(LLM_MODELS),
    conda:
        "../../envs/torch.yaml"
    threads: lambda wc: train_compute(wc.model, "threads_{kind}")
    resources:
        gpu=lambda wc: model_gpus(wc.model),
        mem_mb=lambda wc: train_compute(wc.model, "mem_mb_{kind}"),
        runtime=lambda wc: train_compute(wc.model, "runtime_{kind}_min"),
    params:
        spec=lambda wc: MODELS[wc.model],
        training=lambda wc: model_training_params(wc.model),
        decoding=config["decoding"],
        # a job without a GPU never takes one that is visible on its node
        compute=lambda wc: (
            config["compute"]
            if model_gpus(wc.model)
            else dict(config["compute"], device="cpu")
        ),
        checkpoint_dir="results/checkpoints/{model}/w{window}/fish{fish}/seed{seed}/h{horizon}/fold{fold}",
        code=code_digest("train_decoder"),
    script:
        "../scripts/train_decoder.py"


# The same job for the baselines (ridge, mean, LSTM, ...). A rule name of their own only so that
# schedulers group like with like: a SLURM array job takes one rule's resources for all its
# tasks, and must not mix GPU jobs with CPU jobs.
use rule train_decoder as train_baseline with:
    wildcard_constraints:
        model=_alternation(BASELINE_MODELS),
