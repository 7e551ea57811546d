"""In-process dataset builders, one module per source or benchmark (installed as ``fusion_datasets.builders``)."""
