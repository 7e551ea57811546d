"""Publishing to the Hub. The Hub cannot be reached here: every test runs against :class:`LocalHub`, a test
double for the Hub that copies what would be uploaded into a local "remote" folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard, DatasetCardData

from fusion_datasets.cli import main
from fusion_datasets.hub.push import HubError, HubPublisher, hub_card, parse_hub_output, push_folder, staging_dir
from fusion_datasets.layout import card_configs
from fusion_datasets.testing.hub import LocalHub, http_error

REPO = "my-org/fusion-captions"
FAKE_TOKEN = "hf_FAKEtoken0123456789abcdefXYZ"


def write_run_output(root: Path, complete: bool = True) -> Path:
    """A run's output: two shards of real Parquet, a README written with DatasetCard, stats, leftovers."""
    rows = {"id": ["a", "b", "c", "d"], "caption": ["A dog barks.", None, "Rain on a roof.", "A violin."],
            "errors": [[], [{"stage": "decode", "message": "bad header"}], [], []]}
    cues = datasets.Dataset.from_dict(rows)
    for index, shard in enumerate((cues.select([0, 1]), cues.select([2, 3]))):
        name = f"shard-{index:05d}-of-00002"
        shard.to_parquet(str(root / "data" / "cues" / f"{name}.parquet"))
        shard.filter(lambda row: row["caption"] is not None).to_parquet(
            str(root / "data" / "captions" / f"{name}.parquet"))
        (root / "stats" / f"{name}.json").parent.mkdir(parents=True, exist_ok=True)
        (root / "stats" / f"{name}.json").write_text(json.dumps({"clips": 2}))
    configs = [{"config_name": name, "data_files": f"data/{name}/*.parquet"} for name in ("cues", "captions")]
    card = DatasetCard.from_template(DatasetCardData(configs=configs, license="cc-by-4.0", tags=["audio"]),
                                     template_str="---\n{{ card_data }}\n---\n\n# Test captions\n")
    card.save(root / "README.md")
    (root / "stats.json").write_text(json.dumps({"clips": 4, "complete": complete}))
    (root / "config.yaml").write_text("name: tiny\n")
    (root / "data" / "cues" / ".shard-00001-of-00002.parquet.4242.tmp").write_bytes(b"half a shard")
    (root / ".cache" / "state.json").parent.mkdir()
    (root / ".cache" / "state.json").write_text("{}")
    (root / "review").mkdir()  # a reviewer's judgements name clips by their paths here: never pushed
    (root / "review" / "ana.jsonl").write_text('{"id": "a", "audio": "/home/ana/clips/a.wav", "label": "good"}\n')
    return root


def remote_files(hub: LocalHub) -> set[str]:
    return {path.relative_to(hub.remote).as_posix() for path in hub.remote.rglob("*") if path.is_file()}


@pytest.fixture
def hub(tmp_path) -> LocalHub:
    return LocalHub(tmp_path / "remote")


@pytest.fixture
def output(tmp_path) -> Path:
    return write_run_output(tmp_path / "output")


@pytest.mark.parametrize(("path", "expected"), [
    ("hf://datasets/my-org/fusion-captions", "my-org/fusion-captions"),
    ("hf://datasets/user/Captions_v1.2/", "user/Captions_v1.2"),
    ("output/captions", None),
    ("/abs/hf/datasets/org/name", None),
])
def test_parse_hub_output(path, expected):
    assert parse_hub_output(path) == expected


@pytest.mark.parametrize("path", ["hf://models/org/name", "hf://datasets/org", "hf://datasets/org/name/extra",
                                  "hf://datasets//name", "hf://datasets/org/na me"])
def test_malformed_hub_outputs_name_the_expected_form(path):
    with pytest.raises(ValueError, match="expected hf://datasets/ORG/NAME"):
        parse_hub_output(path)


def test_staging_dir_is_under_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSION_DATASETS_CACHE", str(tmp_path / "cache"))
    assert staging_dir(REPO) == tmp_path / "cache" / "hub" / "my-org" / "fusion-captions"
    monkeypatch.delenv("FUSION_DATASETS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert staging_dir(REPO) == tmp_path / "xdg" / "fusion_datasets" / "hub" / "my-org" / "fusion-captions"


def test_publish_commits_exactly_the_given_files_relative_to_root(hub, output):
    publisher = HubPublisher(REPO, private=True, api=hub)
    shard = [output / "data" / config / "shard-00000-of-00002.parquet" for config in ("cues", "captions")]
    publisher.publish(output, [*shard, output / "stats" / "shard-00000-of-00002.json"], "shard 0")

    expected = {"data/cues/shard-00000-of-00002.parquet", "data/captions/shard-00000-of-00002.parquet",
                "stats/shard-00000-of-00002.json"}
    assert hub.calls[0] == ("create_repo", {"repo_id": REPO, "private": True, "repo_type": "dataset",
                                            "exist_ok": True})
    assert hub.commits() == [{"repo_id": REPO, "repo_type": "dataset", "message": "shard 0",
                              "paths": sorted(expected)}]
    assert remote_files(hub) == expected == set(publisher.pushed_files())
    assert all((hub.remote / name).read_bytes() == (output / name).read_bytes() for name in expected)

    publisher.publish(output, shard, "shard 0 again")  # unchanged: no commit at all
    assert len(hub.commits()) == 1

    # a fresh publisher (a resumed run) learns from the Hub's listing: files with the same content (LFS
    # sha256, or git blob id for the small JSON) are skipped, changed ones committed
    datasets.Dataset.from_dict({"id": ["z"]}).to_parquet(str(shard[1]))
    stats = [output / "stats" / name for name in ("shard-00000-of-00002.json", "shard-00000-of-00001.json")]
    stats[1].write_text("{}")
    resumed = HubPublisher(REPO, api=hub)
    resumed.publish(output, [*shard, *stats], "shard 0, resumed")
    assert hub.commits()[-1]["paths"] == ["data/captions/shard-00000-of-00002.parquet",
                                          "stats/shard-00000-of-00001.json"]
    assert (hub.remote / "data/captions/shard-00000-of-00002.parquet").read_bytes() == shard[1].read_bytes()


def test_transient_errors_are_retried_then_succeed(hub, output, caplog):
    hub.failures = [http_error(503, "Service Unavailable"), http_error(503, "Service Unavailable")]
    publisher = HubPublisher(REPO, api=hub, backoff=0)
    with caplog.at_level(logging.WARNING, logger="fusion_datasets.hub.push"):
        publisher.publish(output, [output / "config.yaml"], "config")
    assert len(hub.commits()) == 3 and remote_files(hub) == {"config.yaml"}
    retries = [record.getMessage() for record in caplog.records]
    assert len(retries) == 2 and all(REPO in message and "HTTP 503" in message for message in retries)


def test_forbidden_is_not_retried_and_names_repo_and_status(hub, output):
    hub.failures = [http_error(403, "You don't have the rights to create a commit in this repository")]
    publisher = HubPublisher(REPO, api=hub, backoff=0)
    with pytest.raises(HubError, match=f"{REPO}.*HTTP 403") as raised:
        publisher.publish(output, [output / "config.yaml"], "config")
    assert raised.value.status == 403 and raised.value.repo_id == REPO
    assert len(hub.commits()) == 1 and remote_files(hub) == set()


def test_push_folder_uploads_a_run_output_that_loads(hub, output):
    assert push_folder(output, REPO, api=hub) == f"https://huggingface.co/datasets/{REPO}"

    local = {path.relative_to(output).as_posix() for path in output.rglob("*") if path.is_file()}
    left_out = {"data/cues/.shard-00001-of-00002.parquet.4242.tmp", ".cache/state.json", "review/ana.jsonl"}
    assert left_out < local and remote_files(hub) == local - left_out
    assert [commit["message"] for commit in hub.commits()] == [f"Upload {output.name} with fusion-datasets",
                                                               "Dataset card"]  # the card after its data
    captions = datasets.load_dataset(str(hub.remote), "captions", split="train")
    assert sorted(captions["id"]) == ["a", "c", "d"]
    assert datasets.load_dataset(str(hub.remote), "cues", split="train").num_rows == 4
    card = DatasetCard.load(hub.remote / "README.md")  # its YAML is a huggingface_hub's DatasetCardData
    assert isinstance(card.data, DatasetCardData) and card.data.license == "cc-by-4.0"
    assert [config["config_name"] for config in card.data.configs] == ["cues", "captions"]


def test_cli_push_prints_the_url(hub, output, monkeypatch, capsys):
    monkeypatch.setattr("huggingface_hub.HfApi", lambda: hub)
    assert main(["push", str(output), REPO, "--private"]) == 0
    assert capsys.readouterr().out.strip() == f"https://huggingface.co/datasets/{REPO}"
    assert hub.calls[0][1]["private"] is True and "README.md" in remote_files(hub)


def test_incomplete_or_foreign_folders_are_refused(hub, tmp_path):
    midrun = write_run_output(tmp_path / "midrun", complete=False)
    with pytest.raises(ValueError, match="mid-run.*--allow-partial"):
        push_folder(midrun, REPO, api=hub)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a run output"):
        push_folder(tmp_path / "plain", REPO, api=hub)
    assert hub.calls == []  # refused before the repository is even created

    push_folder(midrun, REPO, api=hub, allow_incomplete=True)
    assert "data/cues/shard-00000-of-00002.parquet" in remote_files(hub)


def test_the_token_appears_in_no_log_error_or_uploaded_file(hub, output, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    other = "hf_OTHERtoken9876543210zyx"  # a token from elsewhere: scrubbed for its shape
    echo = f"bad request: headers={{'authorization': 'Bearer {FAKE_TOKEN}'}}, old key {other}"  # an echo
    push_folder(output, REPO, api=hub)
    hub.failures = [http_error(502, echo), http_error(401, echo)]
    publisher = HubPublisher(REPO, api=hub, backoff=0)
    (output / "fusionaudio.json").write_text("[]")  # not on the Hub yet: a commit is tried
    with caplog.at_level(logging.DEBUG), pytest.raises(HubError) as raised:
        publisher.publish(output, [output / "fusionaudio.json"], "export")

    message = str(raised.value)
    assert raised.value.status == 401 and "'Bearer ***'}, old key hf_***" in message  # the echo, scrubbed
    assert FAKE_TOKEN not in message and other not in message and raised.value.__cause__ is None
    logged = [record.getMessage() for record in caplog.records]
    assert any("HTTP 502" in line for line in logged)
    assert not any(FAKE_TOKEN in line or other in line for line in logged)
    assert not any(FAKE_TOKEN.encode() in (hub.remote / name).read_bytes() for name in remote_files(hub))


def test_the_hub_card_names_files_by_glob_and_a_push_takes_out_replaced_parts(hub, output):
    push_folder(output, REPO, api=hub)
    # the folder's next state: shard 1 gone (a redo replaced it under another name), a card that lists the rest
    for path in output.glob("data/*/shard-00001-of-00002.parquet"):
        path.rename(path.with_name("shard-00001-of-00002-0001.parquet"))
    push_folder(output, REPO, api=hub)

    card = DatasetCard.load(hub.remote / "README.md")
    assert [config["data_files"] for config in card.data.configs] == [
        [{"split": "train", "path": f"data/{name}/*.parquet"}] for name in ("cues", "captions")]
    assert not list(hub.remote.glob("data/*/shard-00001-of-00002.parquet"))  # out in the card's commit
    assert hub.commits()[-1] == {"repo_id": REPO, "repo_type": "dataset", "message": "Dataset card", "paths": [
        "data/captions/shard-00001-of-00002.parquet", "data/cues/shard-00001-of-00002.parquet"]}  # card unchanged
    cues = datasets.load_dataset(str(hub.remote), "cues", split="train", download_mode="force_redownload")
    assert sorted(cues["id"]) == ["a", "b", "c", "d"]  # each clip once


def test_the_hub_card_of_a_million_clips_stays_small(tmp_path):
    """4,688 parts (1.2M clips in parts of 256): exact lists locally, a few lines of globs on the Hub."""
    names = [f"part-{index:012x}-0000" for index in range(4688)]
    files = {config: [f"data/{config}/{name}.parquet" for name in names] for config in ("cues", "captions", "qa")}
    DatasetCard.from_template(DatasetCardData(configs=card_configs(files)), template_str="---\n{{ card_data }}\n---\n"
                              ).save(tmp_path / "README.md")
    local, hub_side = (tmp_path / "README.md").stat().st_size, len(hub_card(tmp_path / "README.md"))
    assert local > 600_000 and hub_side < 1_000
    assert [config["config_name"] for config in DatasetCard(hub_card(tmp_path / "README.md").decode()).data.configs
            ] == ["cues", "captions", "qa"]
