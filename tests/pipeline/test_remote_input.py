"""A Hub input is listed and indexed where it is, not downloaded whole: each part reads its rows' files, each file
is fetched once and removed after the last part that reads it, and a rerun with nothing to do reads no file.

The Hub is a test double here (:func:`~fusion_datasets.testing.hub.local_hub_files`: ``hf://`` paths read a local
folder, through fsspec as the Hub's ``HfFileSystem`` would be); the Parquet files, their reads and the run are real.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import tarfile
from collections import Counter
from pathlib import Path

import datasets
import fsspec
import pyarrow.parquet as pq
import pytest
import soundfile
from huggingface_hub import DatasetCard, DatasetCardData

from fusion_datasets.cli import main
from fusion_datasets.layout import config_files
from fusion_datasets.pipeline.remote import RemoteTars
from fusion_datasets.testing import media
from fusion_datasets.testing.hub import local_hub_files, use_local_hub_files

RATE = 16000
FAST = ("--set", "experts.separation.enabled=false", "--set", "experts.visual.enabled=false",
        "--set", "experts.music.enabled=false", "--set", "output.shard_size=2")


def _wav(seconds: float, seed: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, media.noise(seconds, RATE, seed=seed).T, RATE, format="WAV")  # (channels, samples)
    return buffer.getvalue()


def _write_split(folder: Path, split: str, files: int, per_file: int, row_group: int | None = None) -> list[str]:
    """``files`` Parquet files of ``per_file`` clips with embedded audio, named as the Hub names a split's files
    (row groups of ``row_group`` rows, else datasets' own size)."""
    features = datasets.Features({"id": datasets.Value("string"), "audio": datasets.Audio(),
                                  "label": datasets.Value("string")})
    names = []
    for number in range(files):
        ids = [f"{split}-{number}-{index}" for index in range(per_file)]
        audio = [{"bytes": _wav(1.0, seed), "path": f"{clip}.wav"} for seed, clip in enumerate(ids)]
        rows = {"id": ids, "audio": audio, "label": ["noise"] * per_file}
        name = f"data/{split}-{number:05d}-of-{files:05d}.parquet"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / name), batch_size=row_group)
        names.append(name)
    return names


@pytest.fixture
def hub(tmp_path):
    """A Hub dataset ``org/clips`` (train: 3 files of 2 clips; test: 1 file), and the reads of its files."""
    repo = tmp_path / "remote" / "datasets" / "org" / "clips"
    train, test = _write_split(repo, "train", 3, 2), _write_split(repo, "test", 1, 2)
    reads = {"fetched": Counter(), "opened": Counter(), "failing": set()}
    with local_hub_files(tmp_path / "remote"):
        hub_files = fsspec.get_filesystem_class("hf")

        class Counting(hub_files):  # counts what a run reads of each file; fails to fetch the "failing" ones
            def get_file(self, path, *args, **kwargs):
                name = str(path).rsplit("clips/", 1)[-1]
                if name in reads["failing"]:
                    raise ConnectionError(f"the connection was reset while fetching {name}")
                reads["fetched"][name] += 1
                return super().get_file(path, *args, **kwargs)

            def open(self, path, *args, **kwargs):
                reads["opened"][str(path).rsplit("clips/", 1)[-1]] += 1
                return super().open(path, *args, **kwargs)

        fsspec.register_implementation("hf", Counting, clobber=True)
        yield {"train": train, "test": test, "reads": reads, "repo": repo}


def _run(output: Path, *extra: str) -> int:
    return main(["run", "tiny", "--input", "org/clips", "--output", str(output), *FAST, *extra])


def test_a_hub_input_is_read_a_part_at_a_time_and_a_rerun_reads_nothing(tmp_path, tiny_zoo, hub, capsys):
    output = tmp_path / "out"
    assert _run(output) == 0
    reads = hub["reads"]
    assert reads["fetched"] == Counter(hub["train"])  # each file of the split once, whole; the test split never
    assert not any(name in reads["opened"] for name in hub["test"])
    assert not any((output / ".cache" / "input-files").iterdir())  # each removed after the last part reading it

    cues = pq.read_table(config_files(output, "cues")).to_pylist()
    assert sorted(row["id"] for row in cues) == [f"train-{file}-{clip}" for file in range(3) for clip in range(2)]
    assert all(row["audio"]["bytes"] and row["audio"]["path"] == f"{row['id']}.wav" for row in cues)
    assert all(row["label"] == "noise" and not row["errors"] for row in cues)
    assert not any(name.startswith("__source") for name in cues[0])
    assert len(list((output / "data" / "cues").glob("*.parquet"))) == 3

    reads["fetched"].clear()
    reads["opened"].clear()
    assert _run(output) == 0  # the index comes from the cache: only the listing is asked for
    assert "0 parts written" in capsys.readouterr().out
    assert reads["fetched"] == Counter() and reads["opened"] == Counter()

    assert _run(output, "--set", "input.split=test", "--dry-run") == 0
    assert "2 new clips to do" in capsys.readouterr().out


def test_a_file_that_cannot_be_read_costs_its_clips_an_error_and_a_rerun_retries_them(tmp_path, tiny_zoo, hub,
                                                                                       caplog):
    """A train file corrupt when indexed is left out and counted; one that cannot be fetched mid-run gives its
    clips a decode error; a rerun reads the first again and ``--retry-errors`` the second."""
    repo, (first, second, _) = tmp_path / "remote" / "datasets" / "org" / "clips", hub["train"]
    good = (repo / first).read_bytes()
    (repo / first).write_bytes(b"PAR1 not a parquet file PAR1")
    hub["reads"]["failing"].add(second)
    output = tmp_path / "out"
    assert _run(output) == 0
    stats = json.loads((output / "stats.json").read_text())
    assert stats["clips"] == 4 and stats["input_unreadable"] == 1 and stats["errors_by_stage"] == {"decode": 2}
    cues = {row["id"]: row for row in pq.read_table(config_files(output, "cues")).to_pylist()}
    assert [error["stage"] for error in cues["train-1-0"]["errors"]] == ["decode"]

    (repo / first).write_bytes(good)  # mended: indexed again, its clips done; a retry fetches the other file
    hub["reads"]["failing"].clear()
    assert _run(output, "--retry-errors") == 0
    stats = json.loads((output / "stats.json").read_text())
    assert stats["clips"] == 6 and stats["input_unreadable"] == 0 and stats["clips_with_errors"] == 0
    assert stats["complete"]

    (repo / first).write_bytes(b"PAR1 corrupt again PAR1")  # its clips look removed: not dropped all the same
    with caplog.at_level(logging.WARNING, logger="fusion_datasets"):
        assert _run(output, "--set", "output.removed_clips=drop") == 0
    stats = json.loads((output / "stats.json").read_text())
    assert stats["clips"] == 6 and stats["clips_not_in_input"] == 2 and stats["input_unreadable"] == 1
    assert "1 files of the input could not be read" in caplog.text


def test_a_url_input_is_read_in_place_and_one_that_cannot_be_listed_is_a_user_error(tmp_path, hub, capsys):
    def dry_run(url: str) -> int:
        return main(["run", "tiny", "--input", url, "--output", str(tmp_path / "out"), "--dry-run"])

    assert dry_run("hf://datasets/org/clips/data/train-0000[01]-*.parquet") == 0  # a glob: two files of three
    assert "4 new clips to do" in capsys.readouterr().out and hub["reads"]["fetched"] == Counter()
    assert dry_run("hf://datasets/org/clips/nothing-here") == 2
    assert "holds no Parquet files" in capsys.readouterr().err
    assert dry_run("az://container/clips") == 2  # no fsspec backend for it here (adlfs)
    assert "input 'az://container/clips' cannot be listed: " in capsys.readouterr().err


def test_a_hub_dataset_with_configs_is_read_as_its_card_declares_them(tmp_path, hub, capsys):
    """A repository laid out as a run's output is: configs in subfolders, declared in its card's YAML."""
    repo = tmp_path / "remote" / "datasets" / "org" / "configs"
    for name, files in (("loud", 2), ("quiet", 1)):
        for written in _write_split(repo / "data" / name, "train", files, 2):
            (repo / "data" / name / written).rename(repo / "data" / name / Path(written).name)
    configs = [{"config_name": "loud", "default": True, "data_files": [{"split": "train", "path": "data/loud/*"}]},
               {"config_name": "quiet", "data_files": "data/quiet/*.parquet"}]
    DatasetCard(f"---\n{DatasetCardData(configs=configs).to_yaml()}\n---\n").save(repo / "README.md")

    def dry_run(*extra: str) -> int:
        return main(["run", "tiny", "--input", "org/configs", "--output", str(tmp_path / "out"), "--dry-run",
                     *extra])

    assert dry_run() == 0 and "4 new clips to do" in capsys.readouterr().out  # the default config's files
    assert dry_run("--set", "input.config=quiet") == 0 and "2 new clips to do" in capsys.readouterr().out
    assert dry_run("--set", "input.config=noisy") == 2
    assert "has no config 'noisy'; its configs: loud, quiet" in capsys.readouterr().err
    assert dry_run("--set", "input.split=test") == 2
    assert "config 'loud' of the Hub dataset org/configs has no split 'test'; its splits: train" in \
        capsys.readouterr().err
    assert dry_run("--input", "org/clips", "--set", "input.config=loud") == 2  # its card declares no configs
    assert "declares no configs" in capsys.readouterr().err
    assert hub["reads"]["fetched"] == Counter()


def _write_shards(folder: Path) -> dict[str, bytes]:
    """Two WebDataset shards named as the Hub names a split's files; returns each clip's audio bytes by id.

    A sample with a JSON ``id``, one without JSON (its id is its key), and one with text but no audio member."""
    audio = {}
    for number in range(2):
        path = folder / "data" / f"train-{number:05d}-of-00002.tar"
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w") as tar:
            for index in range(3):
                key = f"sample{number}{index}"
                buffer = io.BytesIO()
                soundfile.write(buffer, media.noise(1.0, RATE, seed=10 * number + index).T, RATE, format="FLAC")
                members = {f"{key}.flac": buffer.getvalue()}
                if index == 0:
                    members[f"{key}.json"] = json.dumps({"id": f"clip-{number}", "text": "noise"}).encode()
                elif index == 2:
                    members = {f"{key}.txt": b"no audio here"}
                for name, data in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                if f"{key}.flac" in members:
                    audio[f"clip-{number}" if index == 0 else key] = members[f"{key}.flac"]
    return audio


def test_a_webdataset_input_is_indexed_from_its_tar_headers_and_read_a_part_at_a_time(tmp_path, tiny_zoo, hub,
                                                                                      capsys):
    repo = tmp_path / "remote" / "datasets" / "org" / "shards"
    audio = _write_shards(repo)
    output = tmp_path / "out"
    assert main(["run", "tiny", "--input", "org/shards", "--output", str(output), *FAST]) == 0
    shards = [f"datasets/org/shards/data/train-{number:05d}-of-00002.tar" for number in range(2)]
    reads = hub["reads"]
    assert reads["fetched"] == Counter(shards)  # each shard once, whole, by the parts that read it
    cues = {row["id"]: row for row in pq.read_table(config_files(output, "cues")).to_pylist()}
    assert sorted(cues) == ["clip-0", "clip-1", "sample01", "sample02", "sample11", "sample12"]
    assert {clip: cues[clip]["audio"]["bytes"] for clip in audio} == audio
    assert all(not cues[clip]["errors"] and cues[clip]["sound_caption"] for clip in audio)
    assert cues["clip-0"]["json"] == '{"id": "clip-0", "text": "noise"}' and cues["sample02"]["txt"] == "no audio here"
    assert [error["stage"] for error in cues["sample02"]["errors"]] == ["decode"]  # recorded, the run went on

    reads["fetched"].clear()
    reads["opened"].clear()
    assert main(["run", "tiny", "--input", "org/shards", "--output", str(output), *FAST]) == 0
    assert "0 parts written" in capsys.readouterr().out and reads["fetched"] == reads["opened"] == Counter()

    # as a Ray task reads a part: the source pickled to a worker, each audio member read by range
    source = pickle.loads(pickle.dumps(RemoteTars.find("hf://datasets/org/shards/data/*.tar", "train")))
    index = source.index().with_format("arrow")[:]
    rows = source.read_rows(index).to_pylist()
    assert {row["id"]: row["audio"]["bytes"] for row in rows if row["audio"]} == audio
    assert reads["fetched"] == Counter() and not any(name.startswith("__source") for name in rows[0])


def test_on_ray_each_part_reads_its_rows_media_in_a_task_and_the_driver_reads_none(tmp_path, tiny_zoo, hub, capsys):
    """Parts of 3 clips over files of 2 in row groups of 1 row: a part's task reads the row groups of its rows in
    two files. The driver reads the files' ids and paths for the index, never their audio."""
    tiny_zoo.build_all()  # before any worker process needs it
    names = _write_split(hub["repo"], "valid", 3, 2, row_group=1)
    expected = {row["id"]: row["audio"]["bytes"] for name in names
                for row in pq.read_table(hub["repo"] / name).to_pylist()}
    output = tmp_path / "out"
    ray = ("--engine", "ray", "--set", "input.split=valid", "--set", "output.shard_size=3")
    import ray as ray_module

    remote = tmp_path / "remote"

    def hub_double() -> None:  # the Ray workers read hf:// paths through the same Hub double, uncounted
        use_local_hub_files(remote)

    ray_module.init(num_cpus=2, include_dashboard=False, runtime_env={"worker_process_setup_hook": hub_double})
    try:
        assert _run(output, *ray) == 0
        reads = hub["reads"]
        assert reads["fetched"] == Counter() and reads["opened"] == Counter(names)  # the index: once each
        assert not (output / ".cache" / "input-files").exists()
        cues = pq.read_table(config_files(output, "cues")).to_pylist()
        assert {row["id"]: row["audio"]["bytes"] for row in cues} == expected
        assert all(not row["errors"] and row["sound_caption"] for row in cues)

        reads["opened"].clear()  # every part redone on Ray: its kept rows meet the index's, media read again
        assert _run(output, *ray, "--set", "fusion.max_new_tokens=97") == 0
        assert "2 parts written" in capsys.readouterr().out and reads["fetched"] == reads["opened"] == Counter()
        cues = pq.read_table(config_files(output, "cues")).to_pylist()
        assert {row["id"]: row["audio"]["bytes"] for row in cues} == expected
        assert all(not row["errors"] for row in cues)
    finally:
        ray_module.shutdown()
