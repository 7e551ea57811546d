"""Judgements: saved at once and atomically, reloaded by a new session, read by calibrate-filter (several files)."""

import json

import pytest

from fusion_datasets.clap import calibrate_filter
from fusion_datasets.clap.judgements import load_all_judgements, load_judgements
from fusion_datasets.errors import UserError
from fusion_datasets.review import open_review


def test_a_judgement_is_on_disk_at_once_and_a_new_session_continues(output):
    session = open_review(output, sample=3, seed=1, reviewer="alice")
    assert session.summary()["judged"] == 0
    first = session.clips[0]
    session.judge(0, "bad", "wrong animal")
    session.judge(1, "good")
    session.judge(0, "good", "on second listen")  # judged again: same row, new label
    path = output / "review" / "alice.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(row["id"], row["label"]) for row in rows] == [(first.id, "good"), (session.clips[1].id, "good")]
    assert rows[0]["note"] == "on second listen" and rows[0]["audio"].endswith(f"{first.id}.wav")
    assert sorted(p.name for p in path.parent.iterdir()) == ["alice.jsonl"]  # no temporary file left

    again = open_review(output, sample=3, seed=1, reviewer="alice")
    assert [clip.id for clip in again.clips] == [clip.id for clip in session.clips]
    assert again.store.labels()[first.id] == {"label": "good", "note": "on second listen"}
    assert open_review(output, sample=3, seed=1, reviewer="bob").summary()["judged"] == 0  # a file of his own


def test_agreement_with_the_runs_threshold(output):
    session = open_review(output, sample=3, seed=0, reviewer="alice")
    for index, clip in enumerate(session.clips):  # judge exactly as the filter decided, but one
        session.judge(index, "good" if clip.clap_keep == (index != 0) else "bad")
    summary = session.summary()
    assert summary["threshold"] == -0.12 and (summary["judged"], summary["scored"]) == (3, 3)
    assert summary["agreement"] == pytest.approx(2 / 3)


def test_two_reviewers_files_are_read_and_pooled_by_calibrate_filter(output, tiny_zoo):
    for reviewer, labels in (("alice", ["good", "bad", "bad"]), ("bob", ["good", "good"])):
        session = open_review(output, sample=3, seed=2, reviewer=reviewer)
        for index, label in enumerate(labels):
            session.judge(index, label)
    files = [output / "review" / "alice.jsonl", output / "review" / "bob.jsonl"]
    assert load_judgements(files[0])["good"] == [True, False, False]
    pooled = load_all_judgements(files)
    assert pooled["good"] == [True, False, False, True, True] and "audio" in pooled.column_names
    result = calibrate_filter(files, str(tiny_zoo["clap"]), output / "review" / "calibration", batch_size=4)
    assert (result.n, result.n_good, result.n_unscored) == (5, 3, 0)
    report = json.loads((output / "review" / "calibration" / "calibration.json").read_text())
    assert report["judgements"] == [str(path) for path in files]
    summary = open_review(output, sample=3, seed=2, reviewer="alice").calibration()
    assert summary["result"]["n"] == 5 and "judgements" not in summary["result"]  # numbers, not paths


@pytest.mark.parametrize("reviewer", ["../alice", "/tmp/x", "a/b", "..", ".hidden", ""])
def test_a_reviewer_name_is_never_a_path(output, reviewer):
    with pytest.raises(UserError, match="--reviewer"):
        open_review(output, reviewer=reviewer)


def test_a_damaged_judgements_file_names_its_line(output):
    (output / "review").mkdir()
    (output / "review" / "alice.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(UserError, match="alice.jsonl, line 1"):
        open_review(output, reviewer="alice")
