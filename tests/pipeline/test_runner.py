import json

import datasets
import huggingface_hub
import pyarrow.parquet as pq
import pytest
import yaml

import fusion_datasets
from fusion_datasets.cli import main
from fusion_datasets.config import ConfigError
from fusion_datasets.hub.push import staging_dir
from fusion_datasets.layout import CONFIGS, config_files
from fusion_datasets.pipeline.config import load_config
from fusion_datasets.testing import media
from fusion_datasets.testing.hub import LocalHub


@pytest.fixture
def clip_folder(tmp_path):
    folder = tmp_path / "clips"
    media.write_audio(folder / "speech.wav", media.speech(2.0, 16000), 16000)
    media.write_audio(folder / "music.wav", media.music(2.0, 22050, channels=2), 22050)
    media.write_video(folder / "music.mp4", 2.0, fps=5, size=(64, 48))
    (folder / "corrupt.wav").write_bytes(b"not audio at all" * 64)
    return folder


def _run(folder, output, *extra):
    argv = ["run", "tiny", "--input", str(folder), "--output", str(output), "--set", "output.shard_size=2",
            "--set", "experts.separation.enabled=false", *extra]
    assert main(argv) == 0


def test_tiny_run_writes_a_loadable_hub_dataset_and_resumes(tmp_path, tiny_zoo, clip_folder):
    output = tmp_path / "out"
    _run(clip_folder, output)
    cues = datasets.load_dataset(str(output), "cues", split="train")
    captions = datasets.load_dataset(str(output), "captions", split="train")
    qa = datasets.load_dataset(str(output), "qa", split="train")
    assert sorted(cues["id"]) == ["corrupt", "music", "speech"]
    rows = {row["id"]: row for row in cues}
    assert rows["music"]["video"].endswith("music.mp4") and rows["speech"]["video"] is None
    assert [error["stage"] for error in rows["corrupt"]["errors"]][0] == "decode"
    assert sorted(captions["id"]) == ["music", "speech"]
    assert set(qa["clip_id"]) == {"music", "speech"}
    stats = json.loads((output / "stats.json").read_text())
    counts = (stats["clips"], stats["clips_with_errors"], stats["captions"], stats["qa_pairs"])
    assert counts == (3, 1, 2, qa.num_rows)
    assert stats["complete"] and stats["parts"] == 2
    assert sum(stats["clap_histogram"]) == stats["clap_scored"] == 2 and stats["filter_removal_rate"] == 0.0
    published = yaml.safe_load((output / "config.yaml").read_text())  # the resolved config, as published
    assert published["output"]["shard_size"] == 2 and published["experts"]["separation"]["enabled"] is False
    assert published["llm"]["model"] == "local:fusion-lm" and published["input"]["path"] == "clips"
    provenance = json.dumps(list(cues["provenance"]))
    for text in (provenance, *((output / name).read_text() for name in ("config.yaml", "README.md", "manifest.json"))):
        assert str(tiny_zoo["fusion-lm"].parent) not in text and str(tmp_path) not in text  # no machine path
    assert "local:qa-lm" in provenance and "pretty_name: out" in (output / "README.md").read_text()

    shard_files = sorted((output / "data").rglob("*.parquet"))
    before = {path: path.stat().st_mtime_ns for path in shard_files}
    _run(clip_folder, output)
    assert {path: path.stat().st_mtime_ns for path in shard_files} == before  # nothing done twice

    media.write_audio(clip_folder / "corrupt.wav", media.noise(2.0, 16000), 16000)  # the failure is fixed
    first = stats["stages"]
    _run(clip_folder, output, "--retry-errors")
    retried = json.loads((output / "stats.json").read_text())["stages"]
    for stage in ("speech", "tagging", "sound", "music", "fusion", "clap_filter", "qa"):  # decode's readers
        assert retried[stage]["rows"] == first[stage]["rows"] + 1, stage  # the first run's counts, plus one row
        assert retried[stage]["seconds"] > first[stage]["seconds"]
    assert retried["visual"] == first["visual"]  # the corrupt clip has no video: nothing to redo
    cues = datasets.load_dataset(str(output), "cues", split="train", download_mode="force_redownload")
    assert sorted(cues["id"]) == ["corrupt", "music", "speech"]
    assert all(row["errors"] == [] for row in cues)
    kept = {path for path in shard_files if path.exists()}
    assert kept and all(path.stat().st_mtime_ns == before[path] for path in kept)  # the part without errors
    redone = sorted((output / "data" / "cues").glob("*-0001.parquet"))  # the failed row's part, next generation
    assert len(redone) == 1 and "corrupt" in pq.read_table(redone[0])["id"].to_pylist()


def test_stage_types_and_options_are_checked_when_the_config_loads(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("experts:\n  speech: {model: openai/whisper-tiny}\n  tagging: {top_k: 5}\n")
    with pytest.raises(ConfigError, match=r"unknown key experts.speech.modle; allowed: .*max_new_tokens"):
        load_config(str(config), ["experts.speech.modle=x"])
    with pytest.raises(ConfigError, match=r"experts.tagging.type: unknown type 'panns'; tagging types: ast, wav2vec2"):
        load_config(str(config), ["experts.tagging.type=panns"])
    with pytest.raises(ConfigError, match=r"experts.tagging: model: name an audio classifier"):
        load_config(str(config), ["experts.tagging.type=wav2vec2"])
    with pytest.raises(ConfigError, match=r"unknown key experts.tagging.num_beams; allowed: .*top_k"):
        load_config(str(config), ["experts.tagging.type=wav2vec2", "experts.tagging.num_beams=2"])
    assert load_config(str(config), ["experts.tagging.enabled=false", "experts.tagging.type=panns"])  # not run


def test_a_stage_runs_the_type_its_config_names(tmp_path, tiny_zoo, clip_folder):
    """``experts.tagging.type: wav2vec2``: another tagger, the same columns, its own tags and fingerprint."""
    only_tagging = [arg for stage in ("speech", "sound", "music", "visual")
                    for arg in ("--set", f"experts.{stage}.enabled=false")]
    wav2vec2 = ["--set", "experts.tagging.type=wav2vec2",
                "--set", f"experts.tagging.model={tiny_zoo['wav2vec2-audioset']}"]
    runs = {}
    for name, extra in (("ast", []), ("wav2vec2", wav2vec2)):
        _run(clip_folder, tmp_path / name, *only_tagging, *extra)
        cues = datasets.load_dataset(str(tmp_path / name), "cues", split="train")
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        runs[name] = cues, {step["stage"]: step for step in manifest["plan"]}
    (ast_cues, ast_plan), (cues, plan) = runs["ast"], runs["wav2vec2"]
    assert cues.features == ast_cues.features
    assert plan["tagging"]["step"] == "Wav2Vec2AudioTagger" and ast_plan["tagging"]["step"] == "ASTAudioTagger"
    assert plan["tagging"]["fingerprint"] != ast_plan["tagging"]["fingerprint"]
    assert plan["fusion"]["fingerprint"] == ast_plan["fusion"]["fingerprint"]
    tags = {row["id"]: row["audio_tags"] for row in cues}
    assert tags["corrupt"] is None and tags["music"] and tags["speech"]
    assert tags != dict(zip(ast_cues["id"], ast_cues["audio_tags"]))
    config = yaml.safe_load((tmp_path / "wav2vec2" / "config.yaml").read_text())
    assert config["experts"]["tagging"]["type"] == "wav2vec2"
    assert "`Wav2Vec2AudioTagger`" in (tmp_path / "wav2vec2" / "README.md").read_text()


def test_stats_count_time_per_stage_and_llm_usage(tmp_path, tiny_zoo, clip_folder):
    output = tmp_path / "out"
    _run(clip_folder, output)
    stats = json.loads((output / "stats.json").read_text())
    stages = ["speech", "tagging", "sound", "music", "visual", "fusion", "clap_filter", "qa"]
    assert sorted(stats["seconds_by_stage"]) == sorted(stages)
    assert all(seconds > 0 for seconds in stats["seconds_by_stage"].values())
    cues = datasets.load_dataset(str(output), "cues", split="train")
    assert "stage_seconds" not in cues.column_names  # timings go to the stats, not the data
    for stage in ("fusion", "qa"):  # the sums of the rows' usage, over both shards
        usage = [entry for entries in cues["llm_usage"] if entries for entry in entries if entry["stage"] == stage]
        assert stats["llm_usage"][stage]["prompt_tokens"] == sum(entry["prompt_tokens"] for entry in usage) > 0
        assert stats["llm_usage"][stage]["retries"] == 0
    versions = {entry["package_version"] for entries in cues["provenance"] for entry in entries or []}
    assert versions == {fusion_datasets.__version__}


def test_embedded_audio_and_the_fusionaudio_export(tmp_path, tiny_zoo, clip_folder):
    output = tmp_path / "out"
    _run(clip_folder, output, "--embed-audio", "--export", "fusionaudio")
    captions = datasets.load_dataset(str(output), "captions", split="train")
    assert isinstance(captions.features["audio"], datasets.Audio)
    by_id = {row["id"]: row for row in captions.cast_column("audio", datasets.Audio(decode=False))}
    assert by_id["speech"]["audio"]["bytes"] == (clip_folder / "speech.wav").read_bytes()
    decoded = captions.filter(lambda row: row["id"] == "speech")[0]["audio"]
    assert decoded.get_all_samples().data.shape[-1] == 2 * 16000  # torchcodec decodes the embedded bytes
    cues = datasets.load_dataset(str(output), "cues", split="train")
    cues = cues.cast_column("audio", datasets.Audio(decode=False))
    corrupt = next(row for row in cues if row["id"] == "corrupt")
    assert corrupt["audio"]["bytes"] == (clip_folder / "corrupt.wav").read_bytes()  # kept, errors say why

    exported = json.loads((output / "fusionaudio.json").read_text())
    qa = datasets.load_dataset(str(output), "qa", split="train")
    assert len(exported) == captions.num_rows + qa.num_rows
    # embedded, the audio keeps its file's name as its path
    assert [(row["id"], row["audio_id"]) for row in exported if row["task"] == "Captioning questions"] == [
        (clip, f"{clip}.wav") for clip in captions["id"]]


def test_the_fusionaudio_export_names_audio_files(tmp_path, tiny_zoo, clip_folder):
    """FusionAudio's audio_id is the path its code loads the audio from: relative to --audio-root, else absolute."""
    output = tmp_path / "out"
    _run(clip_folder, output, "--export", "fusionaudio", "--audio-root", str(tmp_path))
    exported = json.loads((output / "fusionaudio.json").read_text())
    captions = datasets.load_dataset(str(output), "captions", split="train")
    qa = datasets.load_dataset(str(output), "qa", split="train")
    assert list(exported[0]) == ["audio_id", "instruction", "input", "dataset", "task", "output", "id"]
    expected = [f"clips/{clip}.wav" for clip in captions["id"]] + [f"clips/{clip}.wav" for clip in qa["clip_id"]]
    assert [row["audio_id"] for row in exported] == expected
    assert [row["id"] for row in exported] == [*captions["id"], *qa["clip_id"]]
    _run(clip_folder, output, "--export", "fusionaudio")  # nothing to do but the export, without a root
    exported = json.loads((output / "fusionaudio.json").read_text())
    assert exported[0]["audio_id"] == str(clip_folder / f"{captions['id'][0]}.wav")


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, tiny_zoo, clip_folder, capsys):
    output = tmp_path / "out"
    throughput = tmp_path / "throughput.json"
    throughput.write_text(json.dumps({"measured_on": "a test", "clip_seconds": 5,
                                      "clips_per_second": {"speech": 0.001, "tagging": 3.0, "fusion": 2.0},
                                      "models": {"speech": "local:whisper", "tagging": "MIT/ast-finetuned-audioset"}}))
    _run(clip_folder, output, "--dry-run", "--throughput", str(throughput))
    plan = capsys.readouterr().out
    assert "3 clips" in plan and "0 clips already done, 3 new clips to do in 2 parts" in plan
    assert "estimates from a test, 5 s clips" in plan
    lines = {line.split()[0]: line for line in plan.splitlines() if line.strip()}
    assert str(tiny_zoo["whisper"])[-40:] in lines["speech"] and "50m00s" in lines["speech"]  # 3 clips at 0.001/s
    assert "a test" in lines["speech"]
    # measured with another model (tagging) or with none named (fusion): the bundled tiny zoo's figures instead
    assert "3.00" not in lines["tagging"] and "tiny config on CPU" in lines["tagging"]
    assert "2.00" not in lines["fusion"] and "tiny config on CPU" in lines["fusion"]
    assert not output.exists()

    _run(clip_folder, output, "--dry-run")  # the bundled figures: every stage of the tiny zoo measured
    plan = capsys.readouterr().out
    assert "tiny config on CPU" in plan and "unknown" not in plan


def test_a_dry_run_builds_no_model(tmp_path, clip_folder, monkeypatch, capsys):
    unbuilt = tmp_path / "no-zoo-yet"
    monkeypatch.setenv("FUSION_DATASETS_TINY_ZOO", str(unbuilt))
    _run(clip_folder, tmp_path / "out", "--dry-run")
    assert "no-zoo-yet/whisper" in capsys.readouterr().out and not unbuilt.exists()  # named, not built


EMBED = ("--set", "output.publish_audio=embed")  # what the Hub gets of the audio


def test_an_hf_output_pushes_each_shard_then_the_card(tmp_path, tiny_zoo, clip_folder, monkeypatch):
    """The Hub is a test double here (:class:`LocalHub`, a local folder); the staging folder is real."""
    remote, hubs = tmp_path / "remote", []

    class Hub(LocalHub):  # what `HfApi()` makes during the run
        def __init__(self) -> None:
            super().__init__(remote)
            hubs.append(self)

        def create_commit(self, *args, **kwargs):
            info = super().create_commit(*args, **kwargs)
            # after every commit, a reader of the repository sees one state: the files its card's globs name
            # hold each clip once, each of a part whose state is there too
            cues = sorted(remote.glob("data/cues/*.parquet"))
            ids = [clip for path in cues for clip in pq.read_table(path, columns=["id"])["id"].to_pylist()]
            assert len(ids) == len(set(ids)) and all((remote / "state" / f"{path.stem}.json").is_file()
                                                     for path in cues)
            return info

    monkeypatch.setattr(huggingface_hub, "HfApi", Hub)
    monkeypatch.setenv("FUSION_DATASETS_CACHE", str(tmp_path / "cache"))
    each = (*EMBED, "--set", "output.push_interval=0")  # a Hub commit per part
    _run(clip_folder, "hf://datasets/my-org/captions", *each)

    staging = staging_dir("my-org/captions")
    assert staging == tmp_path / "cache" / "hub" / "my-org" / "captions" and (staging / "stats.json").exists()
    (hub,) = hubs
    sizes = {path.stem: pq.read_metadata(path).num_rows for path in (staging / "data" / "cues").glob("*.parquet")}
    messages = [commit["message"] for commit in hub.commits()]
    assert sorted(messages[:2]) == sorted(f"Part {name} ({rows} clips)" for name, rows in sizes.items())
    assert messages[2:] == ["Dataset card, stats and config"]
    first = messages[0].split()[1]
    parquet = [f"data/{config}/{first}.parquet" for config in ("captions", "cues", "qa")]
    assert hub.commits()[0]["paths"] == sorted([*parquet, f"state/{first}.json", "README.md", "stats.json"])
    captions = datasets.load_dataset(str(remote), "captions", split="train")
    assert sorted(captions["id"]) == ["music", "speech"]
    card = (remote / "README.md").read_text()
    assert 'load_dataset("my-org/captions", "captions"' in card and "path: data/captions/*.parquet" in card

    _run(clip_folder, "hf://datasets/my-org/captions", *each)  # a rerun: the parts' files are on the Hub already
    rerun = hubs[1].commits()
    assert rerun == []  # nor are the card, stats and config, unchanged

    # as if the first run had been killed between committing this part here and pushing it
    for path in remote.rglob(f"{first}.*"):
        path.unlink()
    _run(clip_folder, "hf://datasets/my-org/captions", *each)  # nothing to compute: the part is pushed first
    assert [(commit["message"], commit["paths"]) for commit in hubs[2].commits()] == [
        ("1 parts committed, not pushed yet", sorted([*parquet, f"state/{first}.json"]))]
    assert all(path.is_file() for config in CONFIGS for path in config_files(remote, config))

    # every part redone; in one commit with the finished card, the parts done within output.push_interval
    _run(clip_folder, "hf://datasets/my-org/captions", *EMBED, "--set", "fusion.max_new_tokens=97")
    assert [commit["message"] for commit in hubs[3].commits()] == [
        f"2 parts ({sum(sizes.values())} clips); Dataset card, stats and config"]
    remote_parts = sorted(path.relative_to(remote) for path in (remote / "data").rglob("*.parquet"))
    assert remote_parts == sorted(path.relative_to(staging) for path in (staging / "data").rglob("*.parquet"))
    assert all(path.stem.endswith("-0001") for path in remote_parts)  # the replaced parts are gone
    captions = datasets.load_dataset(str(remote), "captions", split="train", download_mode="force_redownload")
    assert sorted(captions["id"]) == ["music", "speech"]


def test_bad_inputs_each_get_a_result_or_an_error_and_the_counts_add_up(tmp_path, tiny_zoo):
    bad = media.write_bad_audio_files(tmp_path / "bad", long_seconds=12.0)
    good = media.write_audio(tmp_path / "good.wav", media.speech(2.0, 16000), 16000)
    rows = [{"id": kind, "audio": path, "video": None} for kind, path in bad.items()]
    rows.append({"id": "good-video-missing", "audio": str(good), "video": str(tmp_path / "gone.mp4")})
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "clips.parquet"))
    output = tmp_path / "out"
    _run(tmp_path / "clips.parquet", output, "--set", "output.shard_size=3")

    cues = datasets.load_dataset(str(output), "cues", split="train")
    captions = datasets.load_dataset(str(output), "captions", split="train")
    qa = datasets.load_dataset(str(output), "qa", split="train")
    assert sorted(cues["id"]) == sorted(row["id"] for row in rows)
    by_id = {row["id"]: row for row in cues}
    for kind in ("corrupt", "empty", "nan", "missing"):
        assert by_id[kind]["errors"][0]["stage"] == "decode" and by_id[kind]["caption"] is None
    for kind in ("truncated", "surround", "long"):  # decodable (a truncated file keeps a few samples)
        assert by_id[kind]["errors"] == [] and by_id[kind]["sound_caption"] is not None
    assert [error["stage"] for error in by_id["good-video-missing"]["errors"]] == ["visual"]

    stats = json.loads((output / "stats.json").read_text())
    errors = [error["stage"] for row in cues for error in row["errors"]]
    assert stats["clips"] == cues.num_rows == len(rows) and stats["complete"]
    assert stats["clips_with_errors"] == sum(1 for row in cues if row["errors"])
    assert sum(stats["errors_by_stage"].values()) == len(errors)
    assert (stats["captions"], stats["qa_pairs"]) == (captions.num_rows, qa.num_rows)
    assert set(captions["id"]) <= set(cues["id"]) and set(qa["clip_id"]) <= set(captions["id"])
