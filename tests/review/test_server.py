"""The review server over HTTP: loopback only, clips by their place in the sample, every path trick refused."""

import http.client
import json
import os
import socket
import threading

import pytest

from fusion_datasets.cli import main
from fusion_datasets.review import open_review, start_server
from fusion_datasets.review.server import HOST


@pytest.fixture
def served(output):
    session = open_review(output, sample=3, seed=0, reviewer="alice")
    server = start_server(session, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _request(server, method, path, body=None, headers=None):
    """The raw ``path`` as sent (no client normalises it), with this server's Host unless given."""
    connection = http.client.HTTPConnection(HOST, server.server_address[1], timeout=30)
    headers = {"Host": f"{HOST}:{server.server_address[1]}", **(headers or {})}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def test_it_binds_loopback_only(served):
    assert served.server_address[0] == "127.0.0.1"
    with pytest.raises(ConnectionRefusedError):  # 127.0.0.2 reaches a socket bound to 0.0.0.0, not this one
        socket.create_connection(("127.0.0.2", served.server_address[1]), timeout=10)


def test_the_page_names_no_machine_path_and_no_token(output, monkeypatch):
    token = "hf_" + "Zq7" * 12
    monkeypatch.setenv("HF_TOKEN", token)
    session = open_review(output, sample=3, seed=0)
    page = json.dumps(session.page_data("media/{index}/{kind}", None, editable=True))
    clips = {clip.audio.path.parent for clip in session.clips}
    for secret in (str(output), *map(str, clips), token, "/tmp", os.path.expanduser("~")):
        assert secret not in page
    errors = [error for clip in session.clips for error in clip.errors]
    assert errors == [{"stage": "visual", "message": "cannot read video: Error reading noise.mp4..."}]


def test_clips_are_served_by_their_place_in_the_sample_with_ranges(served):
    clip = served.session.clips[0]
    whole = clip.audio.path.read_bytes()
    response, data = _request(served, "GET", "/media/0/audio")
    assert response.status == 200 and data == whole and response.getheader("Content-Type") == "audio/x-wav"
    response, data = _request(served, "GET", "/media/0/audio", headers={"Range": "bytes=10-19"})
    assert response.status == 206 and data == whole[10:20]
    assert response.getheader("Content-Range") == f"bytes 10-19/{len(whole)}"
    response, data = _request(served, "GET", "/media/0/audio", headers={"Range": "bytes=-4"})
    assert data == whole[-4:]
    response, _ = _request(served, "GET", "/media/0/audio", headers={"Range": f"bytes={len(whole)}-"})
    assert response.status == 416
    video = next(i for i, clip in enumerate(served.session.clips) if clip.id == "music")
    assert _request(served, "GET", f"/media/{video}/video")[0].status == 200
    speech = next(i for i, clip in enumerate(served.session.clips) if clip.id == "speech")
    assert _request(served, "GET", f"/media/{speech}/video")[0].status == 404  # no video to this clip


@pytest.mark.parametrize("path", [
    "/../../../etc/passwd", "/media/0/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd",
    "/etc/passwd", "/media/3/audio", "/media/-1/audio", "/media/0/audio/../../config.yaml", "/config.yaml",
    "/data/cues", "/review/alice.jsonl", "/static/review.js", "/media/0/../../../../../../tmp",
    "/calibration.png",  # not calibrated yet
])
def test_path_tricks_are_refused(served, path):
    response, data = _request(served, "GET", path)
    assert response.status in (403, 404) and b"root:" not in data


def test_a_plot_linked_from_outside_the_output_is_refused(served, output, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"\x89PNG secret")
    (output / "review" / "calibration").mkdir(parents=True)
    (output / "review" / "calibration" / "calibration.png").symlink_to(outside)
    assert _request(served, "GET", "/calibration.png")[0].status == 404
    (output / "review" / "calibration" / "calibration.png").unlink()
    (output / "review" / "calibration" / "calibration.png").write_bytes(b"\x89PNG inside")
    response, data = _request(served, "GET", "/calibration.png")
    assert response.status == 200 and data == b"\x89PNG inside"


def test_a_foreign_host_or_origin_is_refused(served):
    assert _request(served, "GET", "/", headers={"Host": "attacker.example"})[0].status == 403
    body = json.dumps({"index": 0, "label": "good"})
    json_type = {"Content-Type": "application/json"}
    foreign = {**json_type, "Origin": "http://attacker.example"}
    assert _request(served, "POST", "/api/judgements", body, foreign)[0].status == 403
    assert _request(served, "POST", "/api/judgements", body, {"Content-Type": "text/plain"})[0].status == 415
    assert served.session.summary()["judged"] == 0
    own = {**json_type, "Origin": f"http://localhost:{served.server_address[1]}"}
    response, data = _request(served, "POST", "/api/judgements", body, own)
    assert response.status == 200 and json.loads(data)["summary"]["judged"] == 1


@pytest.mark.parametrize("request_body", [
    {"index": 9, "label": "good"}, {"index": 0, "label": "maybe"}, {"index": "0", "label": "good"}, {"label": "bad"},
])
def test_a_bad_judgement_is_a_400_and_saves_nothing(served, output, request_body):
    response, data = _request(served, "POST", "/api/judgements", json.dumps(request_body),
                              {"Content-Type": "application/json"})
    assert response.status == 400 and "error" in json.loads(data)
    assert not (output / "review" / "alice.jsonl").exists()


@pytest.mark.parametrize("length", ["twelve", "-1", "12abc", "²"])
def test_a_malformed_content_length_is_a_400(served, output, length):
    body = json.dumps({"index": 0, "label": "good"})
    response, data = _request(served, "POST", "/api/judgements", body,
                              {"Content-Type": "application/json", "Content-Length": length})
    assert response.status == 400 and "error" in json.loads(data)
    assert not (output / "review" / "alice.jsonl").exists()
    assert _request(served, "GET", "/")[0].status == 200  # and the server goes on


def test_one_server_per_reviewer_and_output(served, output):
    from fusion_datasets.errors import UserError

    with pytest.raises(UserError, match="open for reviewer 'alice'"):
        start_server(open_review(output, sample=3, seed=0, reviewer="alice"), port=0)
    other = start_server(open_review(output, sample=3, seed=0, reviewer="bob"), port=0)
    other.server_close()


def test_user_mistakes_are_one_line_and_a_non_zero_exit(output, tmp_path, capsys):
    assert main(["review", str(tmp_path / "nowhere")]) == 2
    assert main(["review", str(tmp_path)]) == 2
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen()
    with busy:
        assert main(["review", str(output), "--port", str(busy.getsockname()[1])]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith("fusion-datasets: error: ") for line in lines)
    assert "is not a folder" in lines[0] and "no data/cues/*.parquet" in lines[1] and "is in use" in lines[2]
