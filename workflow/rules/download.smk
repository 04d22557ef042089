# Opt-in: fetch the paper's public data set (Harvard Dataverse) before ingesting it.
# Only the configured fish and file groups are downloaded; files already present and verified
# are kept, interrupted files resume, and the manifest lists every file with its checksum.
# The files download into download.out_dir/.staging (resumable; not a rule output, so Snakemake
# never deletes it) and are hard-linked beside the manifest, into the fish folders the ingest
# reads: declaring those folders lets the whole DAG be planned before anything is downloaded.


if config["download"]["enabled"]:

    rule download_dataverse:
        output:
            manifest=f"{config['download']['out_dir']}/manifest.json",
            fish=directory([raw_fish_dir(fish) for fish in FISH]),
        log:
            "logs/download/dataverse.log",
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=1000,
        params:
            doi=config["download"]["doi"],
            server=config["download"]["server"],
            groups=config["download"]["groups"],
            fish=FISH,
            timeout_s=config["download"]["timeout_s"],
            retries=config["download"]["retries"],
            staging=f"{config['download']['out_dir']}/.staging",
            code=code_digest("download_dataverse"),
        script:
            "../scripts/download_dataverse.py"
