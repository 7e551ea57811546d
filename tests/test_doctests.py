"""Every module of the package imports, and the examples in its docstrings run (issue 32).

An example runs with its module's names, ``tiny_zoo`` (the session's tiny model zoo: ``tiny_zoo["clap"]`` is a local
model folder) and a temporary folder as the working directory, so that the files it writes go nowhere else. The
examples of the modules in :data:`READ_A_RUN` find a run's output folder there, ``out``.
"""

from __future__ import annotations

import doctest
import importlib
import io
import shutil
from pathlib import Path

import pytest

import fusion_datasets

PACKAGE = Path(fusion_datasets.__file__).parent
MODULES = sorted(".".join(("fusion_datasets", *path.relative_to(PACKAGE).with_suffix("").parts))
                 .removesuffix(".__init__") for path in PACKAGE.rglob("*.py"))
# a copy of one tiny run's output (tagger, fusion, QA over 4 clips: testing.runs.write_segmented_run) as ``out``
READ_A_RUN = {
    "fusion_datasets.export", "fusion_datasets.export.fusionaudio", "fusion_datasets.export.lhotse",
    "fusion_datasets.export.wavcaps", "fusion_datasets.export.webdataset", "fusion_datasets.hub.publish",
    "fusion_datasets.pipeline.card",
    "fusion_datasets.review.clips", "fusion_datasets.review.judgements", "fusion_datasets.review.page",
    "fusion_datasets.review.server", "fusion_datasets.review.session", "fusion_datasets.train.shards",
}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.fixture(scope="session")
def tiny_run(tiny_zoo, tmp_path_factory) -> Path:
    from fusion_datasets.testing.runs import write_segmented_run

    return write_segmented_run(tmp_path_factory.mktemp("clips"), tmp_path_factory.mktemp("run") / "out")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tiny_zoo, tmp_path, monkeypatch, request):
    module = importlib.import_module(name)
    monkeypatch.chdir(tmp_path)
    if name in READ_A_RUN:
        shutil.copytree(request.getfixturevalue("tiny_run"), tmp_path / "out", symlinks=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    for test in doctest.DocTestFinder().find(module, extraglobs={"tiny_zoo": tiny_zoo}):
        runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()
