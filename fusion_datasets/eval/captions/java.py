"""The reference jars that pycocoevalcap 1.2 bundles, run by Java: the PTB tokenizer, METEOR 1.5 and SPICE 1.0.

Each is started once per evaluation over every caption (the JVM's start-up is most of their cost). What
cannot run (no ``java``, pycocoevalcap not installed, no CoreNLP for SPICE, a jar that fails) raises
:class:`MetricUnavailable` with the reason in one line; the caller leaves that metric out.

- tokenization: ``edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase`` on one caption per
  line, then pycocoevalcap's punctuation tokens dropped (``-lrb-`` and ``-rrb-`` stay, as they do there);
- METEOR: ``meteor-1.5.jar - - -stdio -l en -norm``, one ``SCORE`` line per clip, then one ``EVAL`` line
  whose last answer is the corpus METEOR (the jar's aggregate of the clips' statistics, not their mean);
- SPICE: ``edu.anu.spice.SpiceScorer IN -out OUT -subset -silent`` with Stanford CoreNLP 3.6.0's two jars
  on the class path; a clip's score is its ``All`` F-score, the corpus figure their mean.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

PUNCTUATION_TOKENS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":",
                                "-", "--", "...", ";"])  # pycocoevalcap's list (case-sensitive, as there)
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
TIMEOUT_S = 3600


class MetricUnavailable(RuntimeError):
    """A metric cannot run here; the message says why in one line."""


def _package_dir() -> Path:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise MetricUnavailable("pycocoevalcap is not installed (pip install 'fusion-datasets[eval]')")
    return Path(next(iter(spec.submodule_search_locations)))


def java_binary(java: str = "java") -> str:
    """The path of ``java`` (a name on PATH or a path), or :class:`MetricUnavailable`."""
    found = shutil.which(java)
    if found is None:
        raise MetricUnavailable(f"no Java runtime ({java!r} not found; scripts/setup.sh installs "
                                "openjdk-17-jre-headless)")
    return found


def _run(command: Sequence[str], what: str, **options) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, **options)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise MetricUnavailable(f"{what} could not run: {error}") from error
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise MetricUnavailable(f"{what} failed (exit {done.returncode}): {tail[0]}")
    return done


def _one_line(text: str) -> str:
    return " ".join(text.split())


def ptb_tokenize(sentences: Sequence[str], java: str = "java") -> list[str]:
    """Each sentence tokenized as pycocoevalcap tokenizes it (lower case, tokens joined by one space)."""
    jar = _package_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "sentences.txt"
        source.write_text("\n".join(_one_line(sentence) for sentence in sentences), encoding="utf-8")
        done = _run([java_binary(java), "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
                     "-preserveLines", "-lowerCase", "-encoding", "utf-8", str(source)], "the PTB tokenizer")
    lines = done.stdout.decode("utf-8", errors="replace").split("\n")
    if len(lines) < len(sentences):
        raise MetricUnavailable(f"the PTB tokenizer gave {len(lines)} lines for {len(sentences)} sentences")
    return [" ".join(token for token in line.rstrip().split(" ") if token and token not in PUNCTUATION_TOKENS)
            for line in lines[:len(sentences)]]


def _meteor_line(hypothesis: str, references: Sequence[str]) -> str:
    hypothesis = _one_line(hypothesis).replace("|||", "").replace("  ", " ")
    return " ||| ".join(("SCORE", " ||| ".join(_one_line(text).replace("|||", "") for text in references),
                         hypothesis))


def meteor(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
           java: str = "java") -> tuple[float, list[float]]:
    """The corpus METEOR and each clip's, from METEOR 1.5 (English, normalised) on tokenized captions."""
    folder = _package_dir() / "meteor"
    command = [java_binary(java), "-jar", "-Xmx2G", str(folder / "meteor-1.5.jar"), "-", "-", "-stdio", "-l",
               "en", "-norm"]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=errors, text=True, encoding="utf-8")
        lines = [_meteor_line(hypothesis, refs) for hypothesis, refs in zip(hypotheses, references)]
        writer = threading.Thread(target=_write_lines, args=(process, lines), daemon=True)
        writer.start()  # the jar answers each line as it reads it: write and read at once
        try:
            stats = [_read_line(process, errors) for _ in lines]
            writer.join()
            process.stdin.write(" ||| ".join(["EVAL", *stats]) + "\n")
            process.stdin.flush()
            scores = [float(_read_line(process, errors)) for _ in lines]
            corpus = float(_read_line(process, errors))
        finally:
            process.kill()
            process.wait()
    return corpus, scores


def _write_lines(process: subprocess.Popen, lines: Sequence[str]) -> None:
    try:
        process.stdin.writelines(line + "\n" for line in lines)
        process.stdin.flush()
    except OSError:
        pass  # the jar died: the reader reports it with the jar's message


def _read_line(process: subprocess.Popen, errors) -> str:
    line = process.stdout.readline()
    if not line:
        errors.seek(0)
        tail = errors.read().decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise MetricUnavailable(f"METEOR's jar stopped: {tail[0]}")
    return line.strip()


def corenlp_jars(corenlp: str | Path | None) -> list[Path]:
    """CoreNLP 3.6.0's two jars in ``corenlp`` (default: SPICE's ``lib/``, where pycocoevalcap downloads them),
    or :class:`MetricUnavailable` naming the folder looked in."""
    folder = Path(corenlp) if corenlp else _package_dir() / "spice" / "lib"
    jars = [folder / name for name in CORENLP_JARS]
    if not all(jar.is_file() for jar in jars):
        raise MetricUnavailable(f"SPICE needs Stanford CoreNLP 3.6.0 ({' and '.join(CORENLP_JARS)}), not found "
                                f"in {folder}: give its folder with --corenlp DIR")
    return jars


def spice(hypotheses: Sequence[str], references: Sequence[Sequence[str]], java: str = "java",
          corenlp: str | Path | None = None) -> list[float]:
    """Each clip's SPICE F-score (``All``) from SPICE 1.0 on tokenized captions (``NaN``: 0)."""
    jars = corenlp_jars(corenlp)
    folder = _package_dir() / "spice"
    classpath = ":".join(str(path) for path in [folder / "spice-1.0.jar", folder / "lib" / "*", *jars])
    with tempfile.TemporaryDirectory() as work:
        source, target = Path(work) / "input.json", Path(work) / "output.json"
        rows = [{"image_id": str(index), "test": hypothesis, "refs": list(refs)}
                for index, (hypothesis, refs) in enumerate(zip(hypotheses, references))]
        source.write_text(json.dumps(rows), encoding="utf-8")
        _run([java_binary(java), "-Xmx8G", "-cp", classpath, "edu.anu.spice.SpiceScorer", str(source), "-out",
              str(target), "-subset", "-silent"], "SPICE", cwd=folder)
        results = {item["image_id"]: item["scores"]["All"]["f"] for item in json.loads(target.read_text())}
    scores = [float(results.get(str(index), "nan")) for index in range(len(rows))]
    return [0.0 if math.isnan(score) else score for score in scores]
