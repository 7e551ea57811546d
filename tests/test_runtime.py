"""Which GPU each process and each of its ``datasets.map`` workers takes, under fake launcher ranks."""

import sys

import pytest
import torch

from fusion_datasets import runtime


def _launched(local_rank: int, local_processes: int, nodes: int = 1, node: int = 0) -> dict[str, str]:
    """The variables torchrun sets for one process."""
    return {"RANK": str(node * local_processes + local_rank), "WORLD_SIZE": str(nodes * local_processes),
            "LOCAL_RANK": str(local_rank), "LOCAL_WORLD_SIZE": str(local_processes)}


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine sees ``count`` GPUs (set ``gpus.count``) and let tests set the launcher's variables."""
    class Fake:
        count = 4

        def launch(self, environ: dict[str, str]) -> None:
            for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
                monkeypatch.delenv(name, raising=False)
            for name, value in environ.items():
                monkeypatch.setenv(name, value)

    fake = Fake()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: fake.count)
    fake.launch({})
    return fake


def _devices(gpus, environs: list[dict[str, str]], workers: int) -> list[list[str]]:
    """Each process's workers' devices (``num_proc=workers``; a single process maps with rank None)."""
    placed = []
    for environ in environs:
        gpus.launch(environ)
        ranks = [None] if workers == 1 else range(workers)
        placed.append([runtime.resolve_device("auto", rank) for rank in ranks])
    return placed


def test_a_process_alone_spreads_its_workers_over_every_gpu(gpus):
    assert _devices(gpus, [{}], workers=4) == [["cuda:0", "cuda:1", "cuda:2", "cuda:3"]]
    assert _devices(gpus, [{}], workers=1) == [["cuda:0"]]


def test_launched_processes_never_share_a_gpu_their_workers_could_spread_over(gpus):
    # two processes of 2 map workers each on 4 GPUs: worker 0 of both once went to cuda:0
    placed = _devices(gpus, [_launched(0, 2), _launched(1, 2)], workers=2)
    assert placed == [["cuda:0", "cuda:2"], ["cuda:1", "cuda:3"]]
    assert _devices(gpus, [_launched(0, 2), _launched(1, 2)], workers=1) == [["cuda:0"], ["cuda:1"]]


def test_each_node_splits_its_own_gpus(gpus):
    assert _devices(gpus, [_launched(1, 2, nodes=2, node=1)], workers=3) == [["cuda:1", "cuda:3", "cuda:1"]]


def test_with_fewer_gpus_than_processes_the_workers_stay_on_their_process_gpu(gpus):
    gpus.count = 2
    placed = _devices(gpus, [_launched(rank, 4) for rank in range(4)], workers=2)
    assert placed == [["cuda:0"] * 2, ["cuda:1"] * 2, ["cuda:0"] * 2, ["cuda:1"] * 2]


def test_one_visible_gpu_per_process_or_an_unknown_local_count_keeps_each_process_on_one(gpus):
    gpus.count = 1  # CUDA_VISIBLE_DEVICES gives each process its own
    assert _devices(gpus, [_launched(1, 2)], workers=2) == [["cuda:0", "cuda:0"]]
    gpus.count = 4
    unknown = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}  # no LOCAL_WORLD_SIZE
    assert _devices(gpus, [unknown], workers=3) == [["cuda:1"] * 3]


def test_a_given_device_wins_and_the_local_count_must_be_a_number(gpus):
    assert runtime.resolve_device("cpu", rank=3) == "cpu"
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE must be an integer"):
        runtime.process_gpus(4, {"LOCAL_WORLD_SIZE": "two"})


def test_a_missing_extra_is_a_user_error_naming_its_install_line(tmp_path, monkeypatch, capsys):
    from fusion_datasets.cli import main
    from fusion_datasets.errors import UserError
    from fusion_datasets.runtime import require

    monkeypatch.setitem(sys.modules, "yt_dlp", None)  # stands in for a machine without the fetch extra
    with pytest.raises(UserError, match=r"pip install 'fusion-datasets\[fetch\]'") as raised:
        require("yt_dlp", "fetch")
    assert isinstance(raised.value, ImportError)
    segments = tmp_path / "segments.csv"
    segments.write_text("--PJHxphWEs, 30.000, 40.000, \"/m/09x0r\"\n")
    assert main(["fetch", "audioset", "--segments", str(segments), "--output", str(tmp_path / "clips"),
                 "--url-template", "http://127.0.0.1:9/{id}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].endswith("pip install 'fusion-datasets[fetch]'") and "Traceback" not in "\n".join(error)
