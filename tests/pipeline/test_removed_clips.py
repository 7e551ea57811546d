"""``output.removed_clips=drop`` drops only the clips whose files are known gone."""

from __future__ import annotations

import json
import shutil

import datasets

from fusion_datasets.cli import main
from fusion_datasets.testing.media import noise, speech, write_audio
from fusion_datasets.testing.runs import TAGGING_ONLY


def test_drop_removes_a_deleted_file_but_keeps_clips_that_could_not_be_seen(tmp_path, tiny_zoo, caplog):
    clips, disk, output = tmp_path / "clips", tmp_path / "disk", tmp_path / "out"
    for path in (clips / "a" / "one.wav", clips / "a" / "two.wav", clips / "mount" / "three.wav",
                 disk / "four.wav"):
        write_audio(path, (speech if "o" in path.stem else noise)(1.0, 16000), 16000)
    (clips / "linked").symlink_to(disk, target_is_directory=True)  # a folder on another disk
    argv = ["run", "tiny", "--input", str(clips), "--output", str(output), *TAGGING_ONLY]
    assert main(argv) == 0

    (clips / "a" / "two.wav").unlink()  # removed: its folder is there and lists the others
    shutil.rmtree(clips / "mount")
    (clips / "mount").mkdir()  # an empty mount point: a disk that is not mounted
    disk.rename(tmp_path / "unplugged")  # the link now dangles
    assert main([*argv, "--set", "output.removed_clips=drop"]) == 0

    ids = datasets.load_dataset(str(output), "cues", split="train", download_mode="force_redownload")["id"]
    assert sorted(ids) == ["a/one", "linked/four", "mount/three"]
    assert json.loads((output / "stats.json").read_text())["clips_not_in_input"] == 2  # reported, kept
    assert "2 of them are kept all the same" in caplog.text
