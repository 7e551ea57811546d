"""The static export: a self-contained, read-only page with copies of the clips, opened from disk."""

import json

from fusion_datasets.cli import main


def test_the_export_is_self_contained_and_read_only(output, tmp_path, capsys):
    from fusion_datasets.review import open_review

    open_review(output, sample=3, seed=0, reviewer="alice").judge(0, "good", "clear")
    (output / "review" / "calibration").mkdir()
    (output / "review" / "calibration" / "calibration.png").write_bytes(b"\x89PNG plot")
    export = tmp_path / "shared"
    assert main(["review", str(output), "--sample", "3", "--reviewer", "alice", "--export", str(export)]) == 0
    assert capsys.readouterr().out.strip().endswith("index.html")
    html = (export / "index.html").read_text()
    data = json.loads(html.split('<script id="review-data" type="application/json">')[1].split("</script>")[0])
    assert data["editable"] is False and list(data["judgements"].values()) == [{"label": "good", "note": "clear"}]
    files = {path.relative_to(export).as_posix() for path in export.rglob("*") if path.is_file()}
    linked = {clip[key] for clip in data["clips"] for key in ("audio_url", "video_url") if clip[key]}
    assert files == {"index.html", "calibration.png", *linked}  # every clip it plays is beside it
    assert str(output) not in html and str(output.parent) not in html and "http://" not in html


def test_the_export_refuses_a_folder_inside_the_output_or_full_of_other_files(output, tmp_path, capsys):
    assert main(["review", str(output), "--export", str(output / "page")]) == 2
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("x")
    assert main(["review", str(output), "--export", str(tmp_path / "busy")]) == 2
    errors = capsys.readouterr().err
    assert "outside the output folder" in errors and "holds other files" in errors
