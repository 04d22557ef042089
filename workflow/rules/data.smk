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
            seed=lambda wc: config["seed"] + FISH.index(wc.fish),
            code=code_version("simulate"),
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
        code=code_version("io", "formats"),
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
        code=code_version("preprocessing"),
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
        code=code_version("dataset"),
    script:
        "../scripts/assemble_dataset.py"
