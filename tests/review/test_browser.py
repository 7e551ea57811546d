"""The review page in a real browser: Debian's headless Chromium driven by Playwright.

Listen to a clip, judge three captions by keys and buttons, kill the server, start it again, reload: the
judgements are there, and the file calibrates the filter. A screenshot is left for a person to look at.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile

from fusion_datasets.cli import main

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "test-screenshots"
# resolves once the audio element knows its clip's length (a load started if it had not)
DURATION = """(audio) => new Promise((done) => {
    if (audio.readyState >= 1) return done(audio.duration);
    audio.addEventListener("loadedmetadata", () => done(audio.duration), { once: true });
    audio.load();
})"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: run scripts/setup.sh (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"the page's script failed: {errors}"


def _clip_ids(page) -> list[str]:
    return page.locator("article.clip").evaluate_all("(cards) => cards.map((card) => card.dataset.id)")


def _expect_saved(page, index: int, label: str) -> None:
    page.locator(f"#clip-{index} .status").filter(has_text=f"saved: {label}").wait_for()


def test_listen_judge_reload_and_calibrate(output, start_review, page, tiny_zoo):
    review = start_review(output, "--reviewer", "alice", "--sample", "3", "--seed", "7")
    page.goto(review.url)
    ids = _clip_ids(page)
    assert sorted(ids) == ["music", "noise", "speech"]  # every captioned clip; the corrupt one has none

    # listen: the first clip's audio element loads the clip, with the clip's own duration
    audio = page.locator("#clip-0 audio")
    info = soundfile.info(_clip_path(output, ids[0]))
    assert audio.evaluate(DURATION) == pytest.approx(info.frames / info.samplerate, abs=0.05)
    page.keyboard.press(" ")  # space plays the current clip
    page.wait_for_function("() => { const a = document.querySelector('#clip-0 audio'); "
                           "return !a.paused || a.ended; }")
    page.keyboard.press(" ")

    # judge: a key on the current clip, a button, then a note and a key on the next one
    page.keyboard.press("g")
    _expect_saved(page, 0, "good")
    page.locator("#clip-1 button.bad").click()
    _expect_saved(page, 1, "bad")
    page.locator("#clip-2 textarea.note").fill("the dog is not in the clip")
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    _expect_saved(page, 2, "bad")
    assert page.locator("#summary").inner_text().startswith("3 of 3 judged (1 good, 2 bad)")

    # a killed server loses nothing: a new one serves the same sample with the judgements on it
    review.kill()
    review = start_review(output, "--reviewer", "alice", "--sample", "3", "--seed", "7")
    page.goto(review.url)
    assert _clip_ids(page) == ids
    pressed = [page.locator(f"#clip-{i} button[aria-pressed=true]").inner_text() for i in range(3)]
    assert pressed == ["Good (g)", "Bad (b)", "Bad (b)"]
    assert page.locator("#clip-2 textarea.note").input_value() == "the dog is not in the clip"
    page.evaluate("window.scrollTo(0, 0)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "review-page.png"), full_page=True)

    saved = [json.loads(line) for line in (output / "review" / "alice.jsonl").read_text().splitlines()]
    assert [(row["id"], row["label"]) for row in saved] == list(zip(ids, ["good", "bad", "bad"]))
    assert saved[2]["note"] == "the dog is not in the clip"

    # the file calibrates the filter, and the page then shows the calibration and its plot
    assert main(["calibrate-filter", str(output / "review" / "alice.jsonl"), "--model", str(tiny_zoo["clap"]),
                 "--output", str(output / "review" / "calibration"), "--device", "cpu"]) == 0
    report = json.loads((output / "review" / "calibration" / "calibration.json").read_text())
    assert (report["n"], report["n_good"], report["n_unscored"]) == (3, 1, 0)
    page.reload()
    assert page.locator("#calibration-result").inner_text().startswith("Last calibration: threshold")
    assert page.locator("#calibration-plot").evaluate("(image) => image.complete && image.naturalWidth > 0")
    page.screenshot(path=str(SCREENSHOTS / "review-page-calibrated.png"), full_page=True)


def _clip_path(output: Path, clip_id: str) -> Path:
    import pyarrow.parquet as pq

    from fusion_datasets.layout import config_files

    rows = pq.read_table(config_files(output, "cues")[0], columns=["id", "audio"]).to_pylist()
    return Path(next(row["audio"] for row in rows if row["id"] == clip_id))


def test_the_exported_page_plays_from_disk_read_only(output, tmp_path, page):
    from fusion_datasets.review import export_review, open_review

    session = open_review(output, sample=3, seed=7, reviewer="alice")
    session.judge(0, "good")
    index = export_review(session, tmp_path / "shared")
    page.goto(index.as_uri())
    assert page.locator("#summary").inner_text().startswith("1 of 3 judged (1 good, 0 bad)")
    info = soundfile.info(_clip_path(output, session.clips[1].id))
    assert page.locator("#clip-1 audio").evaluate(DURATION) == pytest.approx(info.frames / info.samplerate, abs=0.05)
    assert page.locator("#clip-0 button.good").is_disabled()
    page.keyboard.press("b")  # read-only: keys judge nothing
    assert page.locator("#clip-1 button[aria-pressed=true]").count() == 0
    assert page.locator("#clip-0 button.good").get_attribute("aria-pressed") == "true"
