"""nlp4neuro: decode zebrafish tail behaviour from brain-wide calcium imaging with language models."""

__version__ = "0.1.0"
