"""The repository's habits hold: the pre-commit ruff is the test extra's, files end cleanly, changes are logged."""

import configparser
import re
import subprocess
from pathlib import Path

import yaml

import fusion_datasets

REPOSITORY = Path(__file__).parents[1]
TEXT = (".py", ".md", ".yaml", ".yml", ".cfg", ".toml", ".txt", ".sh", ".json", ".jinja", ".html", ".js", ".css")
# files kept byte for byte as the toolkit wrote them (an output from before a refactor), as pre-commit excludes them
RECORDED = "tests/data/pre_change_output/"


def test_pre_commit_runs_the_ruff_ci_runs():
    hooks = yaml.safe_load((REPOSITORY / ".pre-commit-config.yaml").read_text())["repos"]
    ruff = next(repo for repo in hooks if repo["repo"].endswith("ruff-pre-commit"))
    extras = configparser.ConfigParser()
    extras.read(REPOSITORY / "setup.cfg")
    pinned = re.search(r"ruff==([\d.]+)", extras["options.extras_require"]["test"]).group(1)
    assert ruff["rev"] == f"v{pinned}"


def test_text_files_end_with_one_newline_and_no_trailing_spaces():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True, check=True)
    untidy = []
    for name in tracked.stdout.split():
        path = REPOSITORY / name
        if not name.endswith(TEXT) or name.startswith(RECORDED) or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if text and (not text.endswith("\n") or text.endswith("\n\n")) or any(
                line != line.rstrip() for line in text.split("\n")):
            untidy.append(name)
    assert untidy == []
    assert yaml.safe_load((REPOSITORY / ".pre-commit-config.yaml").read_text())["exclude"] == f"^{RECORDED}"


def test_the_changelog_has_the_version_being_made():
    changelog = (REPOSITORY / "CHANGELOG.md").read_text()
    assert f"({fusion_datasets.__version__})" in changelog or f"## {fusion_datasets.__version__}" in changelog


def test_docstring_examples_are_never_skipped():
    """An example runs (tests/test_doctests.py) or is not written as one: a skipped example goes stale unseen."""
    skipping = {path.relative_to(REPOSITORY).as_posix() for path in (REPOSITORY / "fusion_datasets").rglob("*.py")
                if "doctest: +SKIP" in path.read_text(encoding="utf-8")}
    assert skipping == set()
