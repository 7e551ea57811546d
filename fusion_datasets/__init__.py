"""fusion_datasets: fine-grained audio caption datasets from expert models, fused by an LLM."""

__version__ = "0.1.0.dev0"
