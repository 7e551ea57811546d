"""Parts are named and kept apart for any id a ``datasets`` string column can hold."""

from __future__ import annotations

import hashlib
import json

import datasets

from fusion_datasets.cli import main
from fusion_datasets.pipeline.state import part_name
from fusion_datasets.testing.media import noise, speech, write_audio
from fusion_datasets.testing.runs import TAGGING_ONLY

OPTIONS = [*TAGGING_ONLY, "--set", "output.shard_size=2"]  # in parts of two clips


def test_ids_that_a_line_per_id_would_confuse_get_other_names():
    assert part_name(["a\nb"]) != part_name(["a", "b"])
    assert part_name(["a\\nb"]) != part_name(["a\nb"]) != part_name(["a", "b\n"])
    assert part_name(["a", "b"]) == "part-7e18f737311b-0000"  # plain ids keep the names earlier runs gave
    for ids in (["a\nb"], ["a", "b\\c"], ["", "a\n"]):  # and the others theirs: their JSON list hashed
        digest = hashlib.sha256(json.dumps(ids).encode("utf-8")).hexdigest()[:12]
        assert part_name(ids, 3) == f"part-{digest}-0003"


def test_a_run_over_ids_with_line_breaks_slashes_and_unicode_completes_and_keeps_each_clip(tmp_path, tiny_zoo):
    audio = {"speech": write_audio(tmp_path / "speech.wav", speech(1.0, 16000), 16000),
             "noise": write_audio(tmp_path / "noise.wav", noise(1.0, 16000), 16000)}
    # with two clips a part, "a", "b" and then "a\nb" alone: one line per id, both parts hashed "a\nb"
    ids = ["a", "b", "a\nb"]
    more = ["x/y", "e\u0301t\u00e9 \U0001f3b5", "../up"]
    output = tmp_path / "out"

    def run(clips: list[str]) -> dict:
        rows = [{"id": clip, "audio": str(audio["speech" if index % 2 else "noise"])}
                for index, clip in enumerate(clips)]
        datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "clips.parquet"))
        argv = ["run", "tiny", "--input", str(tmp_path / "clips.parquet"), "--output", str(output), *OPTIONS]
        assert main(argv) == 0
        return json.loads((output / "stats.json").read_text())

    for clips in (ids, ids + more, ids + more):
        stats = run(clips)
        assert stats["complete"] and stats["clips"] == len(clips)
        cues = datasets.load_dataset(str(output), "cues", split="train", download_mode="force_redownload")
        assert sorted(cues["id"]) == sorted(clips)
    assert len(list((output / "data" / "cues").glob("*.parquet"))) == 4  # [a, b], [a\nb], then the new clips in two
