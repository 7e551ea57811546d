"""A tiny random-weight Hybrid Transformer Demucs, saved as a local Demucs model repository.

The folder holds what ``demucs.pretrained.get_model("htdemucs", repo=folder)`` reads: a serialized
model ``<signature>-<checksum>.th`` (the package dict of ``demucs.states.load_model``: class, init
arguments, weights) and a bag ``htdemucs.yaml`` that lists its signature, as in Demucs' own remote
repository. The model keeps the real sources, sample rate and STFT size; only the widths and depths
shrink (about 377k parameters instead of 26.9M).
"""

from __future__ import annotations

from pathlib import Path

# Any name without "-" works: LocalRepo splits "<signature>-<checksum>.th" on the last "-".
_SIGNATURE = "tinyhtdemucs"
_BAG_NAME = "htdemucs"
_README = """# Tiny random HTDemucs

Random weights, for tests only: the separated stems are noise-shaped, not real sources.
Load it with `demucs.pretrained.get_model("htdemucs", repo=Path(this_folder))`.
Built by `fusion_datasets.testing.zoo.separation.build_tiny_htdemucs`.
"""


def build_tiny_htdemucs(path: Path) -> None:
    """Save a tiny random ``HTDemucs`` as a local Demucs repository (model file and bag) into ``path``."""
    import torch
    import yaml
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state, save_with_checksum

    torch.manual_seed(0)
    model = HTDemucs(
        sources=["drums", "bass", "other", "vocals"],
        samplerate=44100,
        segment=4,
        channels=8,
        depth=4,
        nfft=4096,
        t_layers=1,
        t_heads=2,
        dconv_comp=4,
    )
    # demucs.states.serialize_model builds the same dict but needs omegaconf for the training arguments,
    # which loading never reads. HTDemucs.__init__ is wrapped by capture_init, which kept its arguments.
    args, kwargs = model._init_args_kwargs
    package = {"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": get_state(model, None)}
    save_with_checksum(package, path / f"{_SIGNATURE}.th")
    (path / f"{_BAG_NAME}.yaml").write_text(yaml.safe_dump({"models": [_SIGNATURE]}))
    (path / "README.md").write_text(_README)
