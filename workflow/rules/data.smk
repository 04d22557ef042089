# From raw imaging and behaviour files to one xarray dataset per fish.


if config["data"]["source"] == "synthetic":

    rule simulate_fish:
        output:
            raw=directory(raw_fish_dir("{fish}")),
        log:
            "logs/simulate/fish{fish}.log",
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=4000,
        params:
            simulation=config["simulation"],
            pixel_size_um=config["data"]["pixel_size_um"],
            plane_spacing_um=config["data"]["plane_spacing_um"],
            seed=config["seed"],
            code=code_digest("simulate_fish"),
        script:
            "../scripts/simulate_fish.py"


rule ingest_fish:
    input:
        unpack(get_raw_input),
    output:
        ingested="results/ingest/fish{fish}.nc",
    log:
        "logs/ingest/fish{fish}.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        data=config["data"],
        code=code_digest("ingest_fish"),
    script:
        "../scripts/ingest_fish.py"


rule compute_dff:
    input:
        ingested="results/ingest/fish{fish}.nc",
    output:
        dff="results/dff/fish{fish}.nc",
    log:
        "logs/dff/fish{fish}.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        preprocessing=config["preprocessing"],
        code=code_digest("compute_dff"),
    script:
        "../scripts/compute_dff.py"


rule assemble_dataset:
    input:
        ingested="results/ingest/fish{fish}.nc",
        dff="results/dff/fish{fish}.nc",
    output:
        dataset="results/datasets/fish{fish}.nc",
    log:
        "logs/assemble/fish{fish}.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        code=code_digest("assemble_dataset"),
    script:
        "../scripts/assemble_dataset.py"
