"""nlp4neuro: decode zebrafish tail behaviour from calcium imaging with language models."""

__version__ = "0.1.0"
