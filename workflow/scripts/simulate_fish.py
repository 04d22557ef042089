"""Write one synthetic fish in the paper's raw layout, with its ground truth."""

from _runtime import start

from nlp4neuro.simulate import SimulationParams, fish_seed, simulate_fish

logger = start(snakemake)
params = SimulationParams.from_config(
    snakemake.params.simulation,
    pixel_size_um=snakemake.params.pixel_size_um,
    plane_spacing_um=snakemake.params.plane_spacing_um,
)
seed = fish_seed(snakemake.params.seed, snakemake.wildcards.fish)
logger.info(
    "simulating fish %s: %d ROIs x %d frames, seed %d",
    snakemake.wildcards.fish,
    params.n_neurons,
    params.n_frames,
    seed,
)
simulate_fish(snakemake.output.raw, params, seed=seed)
