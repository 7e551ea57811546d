"""The commands the review page suggests run as shown: calibrate-filter with the run's own CLAP model (a local
one by its public name, resolved from the run's record), then the run again with the new threshold, which reruns
only the filter and what reads it."""

import glob
import json
import shlex

import pyarrow.parquet as pq

from fusion_datasets.cli import main
from fusion_datasets.layout import LOCAL_MODELS, config_files
from fusion_datasets.review import open_review
from fusion_datasets.review.page import SERVED_MEDIA


def _served_calibration(output) -> dict:
    return open_review(output, sample=3, seed=2, reviewer="alice").page_data(SERVED_MEDIA, None, True)["calibration"]


def _arguments(command: str) -> list[str]:
    """``command``'s arguments after ``fusion-datasets``, globs expanded as a shell does (in the current folder)."""
    words = shlex.split(command)
    assert words[0] == "fusion-datasets"
    return [match for word in words[1:] for match in (sorted(glob.glob(word)) if "*" in word else [word])]


def test_the_calibrate_command_names_the_local_model_and_runs_in_the_output_folder(output, tiny_zoo, monkeypatch):
    session = open_review(output, sample=3, seed=2, reviewer="alice")
    for index, label in enumerate(["good", "bad", "good"]):
        session.judge(index, label)
    calibration = _served_calibration(output)
    # the model as config.yaml names it; calibrate-filter loads the folder the run recorded for it
    assert " --model local:clap " in calibration["command"] and calibration["model_hint"] is None
    assert str(tiny_zoo.root) not in json.dumps(calibration)
    monkeypatch.chdir(output)  # "In the output folder, run:"
    assert main(_arguments(calibration["command"])) == 0
    threshold = json.loads((output / "review" / "calibration" / "calibration.json").read_text())["threshold"]

    calibrated = _served_calibration(output)
    assert calibrated["result"]["threshold"] == threshold
    assert calibrated["apply"] == f"fusion-datasets run CONFIG --output OUT --set filter.threshold={threshold:.6g}"
    before = json.loads((output / "stats.json").read_text())["stages"]
    clips = {path.rsplit("/", 1)[0] for path in pq.read_table(config_files(output, "cues")[0])["audio"].to_pylist()}
    # the placeholders as the fixture's run was started (config tiny, its input, its other --set)
    arguments = _arguments(calibrated["apply"].replace("CONFIG", "tiny").replace("OUT", str(output)))
    assert main([*arguments, "--input", clips.pop(), "--set", "experts.separation.enabled=false"]) == 0
    stats = json.loads((output / "stats.json").read_text())
    assert f"threshold: {threshold:.6g}" in (output / "config.yaml").read_text()
    assert stats["stages"]["speech"] == before["speech"]  # the experts did not run again
    assert stats["stages"]["clap_filter"]["rows"] == 2 * before["clap_filter"]["rows"]


def test_an_output_without_the_runs_record_of_its_local_models_gets_a_placeholder(output, tmp_path):
    """An output copied to another machine, or written before runs recorded their local models."""
    (output / LOCAL_MODELS).unlink()
    assert main(["review", str(output), "--sample", "3", "--export", str(tmp_path / "shared")]) == 0
    html = (tmp_path / "shared" / "index.html").read_text()
    data = json.loads(html.split('<script id="review-data" type="application/json">')[1].split("</script>")[0])
    calibration = data["calibration"]
    assert " --model MODEL " in calibration["command"] and "(local:clap in config.yaml)" in calibration["model_hint"]
    assert calibration["apply"] == "fusion-datasets run CONFIG --output OUT --set filter.threshold=T"
