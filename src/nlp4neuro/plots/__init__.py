"""Every figure of the pipeline: one `plot_*` function per figure, grouped by stage."""
