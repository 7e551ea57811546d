"""fetch: real yt-dlp and ffmpeg against a local server (tests/fetch/conftest.py) standing in for YouTube."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import soundfile

from fusion_datasets.cli import main
from fusion_datasets.fetch.manifest import JOURNAL_FILE, MANIFEST_FILE, read_manifest
from fusion_datasets.testing.runs import TAGGING_ONLY

FAST = ["--socket-timeout", "0.5", "--retries", "1", "--backoff", "0.05", "--jobs", "4"]


def _fetch(server, csv: Path, output: Path, *extra: str, kind: str = "audioset") -> int:
    return main(["fetch", kind, "--segments", str(csv), "--output", str(output), "--url-template", server.template,
                 *FAST, *extra])


def _csv(path: Path, *rows: str) -> Path:
    header = "# Segments csv created Sun Mar  5 10:54:31 2017\n# YTID, start_seconds, end_seconds, positive_labels\n"
    path.write_text(header + "".join(f"{row}\n" for row in rows))
    return path


def _statuses(output: Path) -> dict[str, str]:
    return {row["youtube_id"]: row["status"] for row in pq.read_table(output / MANIFEST_FILE).to_pylist()}


def test_each_segment_gets_its_status_and_a_rerun_completes_what_could_be(tmp_path, media_server, videos):
    sound, mute = videos["sound"], videos["mute"]
    media_server.add("ok_clip_001", sound)
    media_server.add("limit_42901", sound, rate_limited=1)
    media_server.add("gone_404_01", sound, status=404)
    media_server.add("forbid_4031", sound, status=403)
    media_server.add("stall_00001", sound, stall=3.0)
    media_server.add("trunc_00001", sound, truncate=True)
    media_server.add("short_00001", sound)
    media_server.add("mute_000001", mute)
    csv = _csv(tmp_path / "eval_segments.csv",
               'ok_clip_001, 0.500, 2.500, "/m/09x0r,/m/04rlf"', "limit_42901, 1.000, 3.000, /m/09x0r",
               "gone_404_01, 0.000, 2.000, /m/09x0r", "forbid_4031, 0.000, 2.000, /m/09x0r",
               "stall_00001, 0.000, 2.000, /m/09x0r", "trunc_00001, 0.000, 2.000, /m/09x0r",
               "short_00001, 2.000, 12.000, /m/09x0r", "mute_000001, 0.000, 2.000, /m/09x0r",
               "ok_clip_001, 0.500, 2.500, /m/09x0r",  # given twice: fetched once
               "bad_start01, soon, 2.000, /m/09x0r", "not/an/id, 0.000, 2.000, /m/09x0r")
    output = tmp_path / "media"
    assert _fetch(media_server, csv, output) == 0

    statuses = _statuses(output)
    assert statuses == {"ok_clip_001": "ok", "limit_42901": "ok", "gone_404_01": "unavailable",
                        "forbid_4031": "failed-other", "stall_00001": "failed-other",
                        "trunc_00001": "failed-other", "short_00001": "too-short", "mute_000001": "failed-to-cut"}
    records = {record.youtube_id: record for record in read_manifest(output).values()}
    ok = records["ok_clip_001"]
    path = output / "ok_clip_001_0.5.flac"
    assert ok.audio == path.name and ok.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    info = soundfile.info(str(path))
    assert (ok.sample_rate, ok.channels) == (info.samplerate, info.channels) == (44100, 2)
    assert ok.duration == pytest.approx(2.0, abs=0.05) and ok.labels == ("Speech", "Music")
    assert records["limit_42901"].attempts == 2  # a 429, then the file after the backoff
    assert "403" in records["forbid_4031"].error and "timed out" in records["stall_00001"].error
    assert "more expected" in records["trunc_00001"].error and "404" in records["gone_404_01"].error
    assert records["short_00001"].error.startswith("the source holds 1.0")  # 3 s, from 2 s on
    assert records["short_00001"].error.endswith("s of the 10 s segment")
    assert "no audio" in records["mute_000001"].error
    assert sorted(p.name for p in output.glob("*.flac")) == ["limit_42901_1.flac", "ok_clip_001_0.5.flac"]
    summary = json.loads((output / "fetch_summary.json").read_text())
    assert summary["segments"] == 8 and summary["by_status"]["failed-other"] == 3 and summary["available"] == 0.25
    assert summary["csv"]["skipped"] == {"bad_csv_line": 1, "bad_youtube_id": 1}
    assert not (output / JOURNAL_FILE).exists() and not (output / ".fetch-work").exists()

    # the passing failures pass: a rerun fetches those, and only those
    for ytid in ("stall_00001", "trunc_00001", "forbid_4031"):
        media_server.behaviour[ytid].stall, media_server.behaviour[ytid].truncate = 0.0, False
        media_server.behaviour[ytid].status = 200
    media_server.behaviour["gone_404_01"].status = 200  # back online, but not asked for again by default
    before = dict(media_server.requests)
    assert _fetch(media_server, csv, output) == 0
    asked = {ytid for ytid, count in media_server.requests.items() if count > before.get(ytid, 0)}
    assert asked == {"stall_00001", "trunc_00001", "forbid_4031", "mute_000001"}
    assert _statuses(output)["stall_00001"] == _statuses(output)["trunc_00001"] == "ok"
    assert _statuses(output)["gone_404_01"] == "unavailable"

    assert _fetch(media_server, csv, output, "--retry", "unavailable") == 0
    assert _statuses(output)["gone_404_01"] == "ok"
    assert read_manifest(output)["gone_404_01_0_2"].attempts == 2


def test_secrets_reach_yt_dlp_and_nothing_else(tmp_path, media_server, videos, caplog):
    media_server.add("ok_clip_001", videos["sound"])
    media_server.add("gone_404_01", videos["sound"], status=404)
    csv = _csv(tmp_path / "segments.csv", "ok_clip_001, 0, 2, /m/09x0r", "gone_404_01, 0, 2, /m/09x0r")
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tSID\tcookie-s3cret-value\n")
    original = cookies.read_bytes()
    proxy = f"http://fetcher:proxy-s3cret-pass@127.0.0.1:{media_server.port}"  # the server is the proxy too
    output = tmp_path / "media"
    with caplog.at_level(logging.DEBUG):
        assert _fetch(media_server, csv, output, "--cookies", str(cookies), "--proxy", proxy) == 0
    assert _statuses(output) == {"ok_clip_001": "ok", "gone_404_01": "unavailable"}
    sent = media_server.headers
    assert all("SID=cookie-s3cret-value" in headers.get("Cookie", "") for headers in sent)
    assert all(headers.get("Proxy-Authorization", "").startswith("Basic ") for headers in sent)
    assert cookies.read_bytes() == original  # yt-dlp rewrites the jar it is given: it got a copy
    written = b"".join(path.read_bytes() for path in output.rglob("*") if path.is_file())
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    for secret in ("cookie-s3cret-value", "proxy-s3cret-pass", proxy):
        assert secret.encode() not in written and secret not in logged
    assert "yt-dlp" in caplog.text  # its lines were logged (redacted), so the check above saw them


def test_a_killed_fetch_resumes_without_taking_a_partial_file_or_fetching_twice(tmp_path, media_server, videos):
    held = threading.Event()
    ids = ["first_00001", "second_0001", "held_000001", "fourth_0001"]
    for ytid in ids:
        media_server.add(ytid, videos["sound"], slow=held if ytid == "held_000001" else None)
    csv = _csv(tmp_path / "segments.csv", *(f"{ytid}, 0, 2, /m/09x0r" for ytid in ids))
    output = tmp_path / "media"
    command = [sys.executable, "-m", "fusion_datasets.cli", "fetch", "audioset", "--segments", str(csv),
               "--output", str(output), "--url-template", media_server.template, "--jobs", "1"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert media_server.started["held_000001"].wait(60), "the fetch never reached the held segment"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert not (output / "held_000001_0.flac").exists()
    assert (output / ".fetch-work").exists()  # its half download is there, under no clip's name
    assert set(read_manifest(output)) == {"first_00001_0_2", "second_0001_0_2"}  # from the journal
    before = dict(media_server.requests)

    held.set()
    assert main(["fetch", "audioset", "--segments", str(csv), "--output", str(output),
                 "--url-template", media_server.template]) == 0
    assert {ytid: media_server.requests[ytid] - before.get(ytid, 0) for ytid in ids} == \
        {"first_00001": 0, "second_0001": 0, "held_000001": 2, "fourth_0001": 2}  # yt-dlp asks twice per fetch
    records = read_manifest(output)
    assert {record.status for record in records.values()} == {"ok"}
    for record in records.values():
        assert hashlib.sha256((output / record.audio).read_bytes()).hexdigest() == record.sha256
    assert not (output / ".fetch-work").exists() and not list(output.glob(".*.tmp"))


def test_fetched_clips_run_with_their_audioset_labels_as_human_tags(tmp_path, media_server, videos):
    media_server.add("ok_clip_001", videos["sound"])
    media_server.add("ok_clip_002", videos["sound"])
    csv = _csv(tmp_path / "segments.csv", 'ok_clip_001, 0, 2, "/m/09x0r,/m/04rlf"', "ok_clip_002, 1, 3, /m/0jbk")
    output = tmp_path / "media"
    assert _fetch(media_server, csv, output, "--video") == 0
    video = output / "ok_clip_001_0.mp4"
    import decord

    assert len(decord.VideoReader(str(video))) == 20  # 2 s at 10 fps
    run = tmp_path / "run"
    assert main(["run", "tiny", "--input", str(output), "--output", str(run), *TAGGING_ONLY]) == 0
    cues = {row["id"]: row for row in datasets.load_dataset(str(run), "cues", split="train")}
    assert set(cues) == {"ok_clip_001_0_2", "ok_clip_002_1_3"}
    assert cues["ok_clip_001_0_2"]["video"] == str(video)
    human = {tag["label"] for tag in cues["ok_clip_001_0_2"]["audio_tags"] if tag["score"] == 1.0}
    assert human == {"Speech", "Music"}
    assert {tag["label"] for tag in cues["ok_clip_002_1_3"]["audio_tags"] if tag["score"] == 1.0} == {"Animal"}


@pytest.mark.parametrize("kind, text, expected", [
    ("audiocaps", "id,ytid,start\n1,abcdefghijk,0\n", "naming the columns youtube_id, start_time"),
    ("audioset", "abcdefghijk\n0123456789a\n", "no segment to fetch"),
])
def test_a_list_without_its_columns_is_refused_in_one_paragraph(tmp_path, capsys, kind, text, expected):
    csv = tmp_path / "list.csv"
    csv.write_text(text)
    assert main(["fetch", kind, "--segments", str(csv), "--output", str(tmp_path / "media")]) == 2
    error = capsys.readouterr().err
    assert expected in error and "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_audiocaps_and_vggsound_lists_give_ten_second_segments(tmp_path, media_server, videos):
    media_server.add("ok_clip_001", videos["sound"])
    audiocaps = tmp_path / "test.csv"
    audiocaps.write_text("audiocap_id,youtube_id,start_time,caption\n1,ok_clip_001,0,A man speaks\n"
                         "2,ok_clip_001,0,Someone talks\n")
    vggsound = tmp_path / "vggsound.csv"
    vggsound.write_text("ok_clip_001,0,people whistling,test\n")
    for kind, segments in (("audiocaps", audiocaps), ("vggsound", vggsound)):
        output = tmp_path / kind
        assert _fetch(media_server, segments, output, "--min-fraction", "0.2", kind=kind) == 0
        (record,) = read_manifest(output).values()
        assert (record.id, record.status, record.duration) == ("ok_clip_001_0_10", "ok", pytest.approx(3.0, abs=0.1))
    assert record.labels == ("people whistling",)


def test_builds_of_fetched_folders_say_which_benchmark_clips_exist(tmp_path, media_server, videos):
    media_server.add("ok_clip_001", videos["sound"])
    media_server.add("private_001", videos["sound"], status=404)
    media_server.add("ok_clip_002", videos["sound"])
    data = tmp_path / "audiocaps"
    data.mkdir()
    (data / "test.csv").write_text("audiocap_id,youtube_id,start_time,caption\n1,ok_clip_001,0,A man speaks\n"
                                   "2,ok_clip_001,0,Someone talks\n3,private_001,0,A dog barks\n"
                                   "4,private_001,0,Barking\n5,never_fetch,0,Wind\n")
    media = tmp_path / "media"
    fetched = tmp_path / "fetched.csv"  # all but the last clip, which no fetch asked for
    fetched.write_text("".join((data / "test.csv").read_text().splitlines(keepends=True)[:-1]))
    assert _fetch(media_server, fetched, media, "--min-fraction", "0.2", kind="audiocaps") == 0
    built = tmp_path / "built"
    assert main(["build", "audiocaps", "--data-dir", str(data), "--audio-root", str(media),
                 "--output", str(built)]) == 0
    stats = json.loads((built / "stats.json").read_text())
    assert stats["skipped"] == {"unavailable": 1, "missing_audio": 1}  # one line per clip, not per caption
    assert stats["availability"]["by_status"] == {"ok": 1, "unavailable": 1, "not_in_manifest": 1}
    assert [row["reference"] for row in csv.DictReader(open(built / "missing_clips.csv"))] == ["never_fetch_0"]
    assert datasets.load_dataset(str(built), split="test")["id"] == ["ok_clip_001"]

    segments = _csv(tmp_path / "eval_segments.csv", "ok_clip_002, 0, 2, /m/09x0r", "private_001, 0, 2, /m/09x0r")
    assert _fetch(media_server, segments, media) == 0
    source = tmp_path / "source"
    assert main(["build", "audioset", "--data-dir", str(tmp_path), "--data-file", str(segments), "--audio-root",
                 str(media), "--output", str(source), "--no-leakage-guard"]) == 0
    stats = json.loads((source / "stats.json").read_text())
    assert stats["skipped"] == {"unavailable": 1} and stats["availability"]["by_status"] == {"ok": 1,
                                                                                            "unavailable": 1}
    (row,) = datasets.load_dataset(str(source), split="train")
    assert row["id"] == "ok_clip_002_0_2" and row["audio_tags"] == [{"label": "Speech", "score": 1.0}]
