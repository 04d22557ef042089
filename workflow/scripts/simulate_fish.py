"""Write one synthetic fish in the paper's raw layout, with its ground truth."""

from _runtime import start

from nlp4neuro.simulate import SimulationParams, simulate_fish

logger = start(snakemake)
params = SimulationParams.from_config(
    snakemake.params.simulation,
    pixel_size_um=snakemake.params.pixel_size_um,
    plane_spacing_um=snakemake.params.plane_spacing_um,
)
logger.info("simulating %d ROIs x %d frames", params.n_neurons, params.n_frames)
simulate_fish(snakemake.output.raw, params, seed=snakemake.params.seed)
