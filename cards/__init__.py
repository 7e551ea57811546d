"""Dataset card templates (installed as ``fusion_datasets.cards``)."""
