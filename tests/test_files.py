"""The shared plumbing: atomic writes, retry delays, undecoded loading."""

import os

import datasets
import pytest

from fusion_datasets.files import TEMPORARY, temporary_path, write_bytes_atomically, write_text_atomically
from fusion_datasets.http_errors import retry_delay
from fusion_datasets.loading import load_undecoded, undecoded
from fusion_datasets.testing.media import noise, write_audio


def test_an_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "new" / "stats.json"
    write_text_atomically(path, "old")
    assert write_text_atomically(path, "nouveau é") == path
    assert path.read_text("utf-8") == "nouveau é"
    assert write_bytes_atomically(tmp_path / "plot.png", b"\x89PNG").read_bytes() == b"\x89PNG"
    assert sorted(item.name for item in tmp_path.rglob("*")) == ["new", "plot.png", "stats.json"]


def test_the_temporary_name_carries_the_pid_that_cleanup_reads(tmp_path):
    name = temporary_path(tmp_path / "data" / "part-1.parquet").name
    assert TEMPORARY.match(name)["pid"] == str(os.getpid())
    assert TEMPORARY.match(name)["name"] == "part-1.parquet"


def test_retry_delays_are_full_jitter_below_a_doubling_cap():
    delays = [retry_delay(0.5, attempt) for attempt in range(4) for _ in range(200)]
    for attempt in range(4):
        drawn = delays[attempt * 200:(attempt + 1) * 200]
        assert 0 <= min(drawn) and max(drawn) <= 0.5 * 2**attempt
        assert max(drawn) > 0.5 * 2**attempt * 0.8  # spread over the whole range, not a fixed wait


def test_audio_columns_load_undecoded(tmp_path):
    clip = write_audio(tmp_path / "a.wav", noise(0.5), 16000)
    table = datasets.Dataset.from_dict({"audio": [str(clip)], "other": [str(clip)]}).cast_column(
        "audio", datasets.Audio()).cast_column("other", datasets.Audio())
    assert undecoded(table)[0]["audio"] == {"bytes": None, "path": str(clip)}
    table.to_parquet(str(tmp_path / "clips.parquet"))
    loaded = load_undecoded(str(tmp_path))
    assert all(not feature.decode for feature in loaded.features.values())
    assert loaded[0]["other"]["path"] == str(clip)


@pytest.mark.parametrize("override", ["batch_size", "=3"])
def test_an_override_without_a_key_or_an_equals_sign_names_itself(override):
    from fusion_datasets.config import ConfigError, parse_override

    with pytest.raises(ConfigError, match=f"--set expects key=value, got '{override}'"):
        parse_override(override)
