"""The import arrows run one way: command line -> runner, builders, hub, eval, train -> steps (experts, LLM
stages, CLAP) -> the step protocol and registry -> chat backends -> media, runtime and the other plumbing; the
test kit is imported by tests and the CLI's and demo's tiny paths only. The steps know each other only through
the protocol and the registry.

Imports are read with ``ast`` (nothing is imported), each with the top-level function it sits in, so a
lazy import counts as much as one at the top of a module, and an import for annotations only
(``if TYPE_CHECKING:``) as much as one that runs. ``pytest -s tests/test_layering.py`` prints the layers.
"""

import ast
from pathlib import Path

import fusion_datasets

REPOSITORY = Path(fusion_datasets.__file__).parent.parent
# where each installed package's files are in a checkout (setup.cfg's package_dir)
PACKAGES = {"fusion_datasets": "fusion_datasets", "fusion_datasets.builders": "builders",
            "fusion_datasets.cards": "cards", "fusion_datasets.evaluate_modules": "eval"}
# lower numbers are higher up; a module imports only from its own layer or the ones below it
LAYERS = {
    "cli": 0, "demo": 0,
    "pipeline": 1, "builders": 1, "hub": 1, "eval": 1, "train": 1, "export": 1, "evaluate_modules": 1, "cards": 1,
    "fetch": 1,
    "experts": 2, "llm": 2, "clap": 2,
    "steps": 3, "registry": 3, "cues": 3, "prompts": 3,
    "chat": 4,
}
BOTTOM = 5  # media, media_files, runtime, files, loading, layout, config, errors, http_errors, labels, ...
NAMES = {0: "commands", 1: "drivers", 2: "steps", 3: "protocol and registry", 4: "chat backends", BOTTOM: "plumbing"}
# (importer, imported) packages of one layer whose arrow would run back up, or sideways between the steps
SIDEWAYS = {("experts", "llm"): "the experts do not build on the LLM stages (both build on the chat backends)",
            ("llm", "experts"): "the LLM stages know the experts through the registry, not by import",
            ("clap", "experts"): "the CLAP filter is a step of its own (the step protocol is in steps)",
            ("clap", "llm"): "the CLAP filter does not build on the LLM stages"}
# (module, top-level function) where code outside tests may import the test kit
TEST_KIT_ALLOWED = {("fusion_datasets.cli", "_tiny_zoo"), ("fusion_datasets.cli", "_tiny_model_name"),
                    ("fusion_datasets.cli", "_build_tiny_zoo"),
                    ("fusion_datasets.demo", "run_demo")}  # the tiny-zoo command, run's and demo's tiny paths


def _modules():
    for package, folder in PACKAGES.items():
        for path in sorted((REPOSITORY / folder).rglob("*.py")):
            parts = path.relative_to(REPOSITORY / folder).with_suffix("").parts
            if package == "fusion_datasets" and parts[0] in ("builders", "cards", "evaluate_modules"):
                continue  # links to the other folders in some checkouts
            name = ".".join([package, *parts]).removesuffix(".__init__")
            yield name, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree):
    """``(function, imported module)`` for each import; function is the enclosing top-level def or ''."""
    for top in tree.body:
        function = top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else ""
        for node in ast.walk(top):
            if isinstance(node, ast.Import):
                yield from ((function, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield from ((function, f"{node.module}.{alias.name}") for alias in node.names)


MODULES = dict(_modules())


def _module(imported: str) -> str:
    """The module of ``a.b.c`` (``from a.b import c``): the longest prefix that is one of ours."""
    parts = imported.split(".")
    return next((".".join(parts[:end]) for end in range(len(parts), 0, -1) if ".".join(parts[:end]) in MODULES),
                imported)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(module: str) -> int:
    return LAYERS.get(_package(module), BOTTOM)


def _crossing(module: str, function: str, target: str) -> str | None:
    """Why ``module`` (in ``function``) may not import ``target``; None when it may."""
    if target.startswith("fusion_datasets.testing") and (module, function) not in TEST_KIT_ALLOWED:
        return "the test kit is for tests"
    if _layer(target) < _layer(module):
        return f"{NAMES[_layer(module)]} import {NAMES[_layer(target)]}, a layer above"
    # beside the runner: builders, evaluation and training read outputs, they do not run the pipeline
    if _layer(module) == 1 and _package(module) != "pipeline" and _package(target) == "pipeline":
        return "a driver beside the pipeline imports it"
    return SIDEWAYS.get((_package(module), _package(target)))


def _crossings() -> list[str]:
    """``module (function) -> imported module: why`` for each import against the arrows."""
    found = set()
    for module, tree in MODULES.items():
        if module.startswith("fusion_datasets.testing"):
            continue
        for function, imported in _imports(tree):
            target = _module(imported)
            if target.startswith("fusion_datasets") and (why := _crossing(module, function, target)):
                found.add(f"{module} ({function or 'module level'}) -> {target}: {why}")
    return sorted(found)


def test_the_layers_are_printed():
    for layer, name in sorted(NAMES.items()):
        packages = sorted(package for package, number in LAYERS.items() if number == layer) or ["the rest"]
        print(f"layer {layer}, {name}: {', '.join(packages)}")
    assert set(LAYERS.values()) | {BOTTOM} == set(NAMES)


def test_imports_run_one_way_and_the_test_kit_stays_in_tests():
    assert _crossings() == [], "imports against the arrows:\n" + "\n".join(_crossings())


def test_the_checker_names_an_import_that_breaks_the_layers():
    assert _crossing("fusion_datasets.chat.backends", "", "fusion_datasets.llm.step") == \
        "chat backends import steps, a layer above"
    assert _crossing("fusion_datasets.steps", "", "fusion_datasets.experts.speech") == \
        "protocol and registry import steps, a layer above"
    assert _crossing("fusion_datasets.llm.fusion", "", "fusion_datasets.experts.tagging") == \
        SIDEWAYS["llm", "experts"]
    assert _crossing("fusion_datasets.experts.served", "", "fusion_datasets.llm.fusion") == \
        SIDEWAYS["experts", "llm"]
    assert _crossing("fusion_datasets.eval.qa", "run_qa_eval", "fusion_datasets.pipeline.runner") == \
        "a driver beside the pipeline imports it"
    assert _crossing("fusion_datasets.llm.step", "", "fusion_datasets.chat.backends") is None


def test_the_executors_import_their_base_not_each_other():
    engines = {name for name in MODULES if name.startswith("fusion_datasets.pipeline.executors.")} - {
        "fusion_datasets.pipeline.executors.base"}
    assert engines == {"fusion_datasets.pipeline.executors.local", "fusion_datasets.pipeline.executors.ray"}
    for engine in engines:
        imported = {_module(name) for _, name in _imports(MODULES[engine])}
        assert "fusion_datasets.pipeline.executors.base" in imported and not imported & (engines - {engine})


def test_the_steps_and_the_plumbing_import_no_driver():
    for module, tree in MODULES.items():
        if _layer(module) >= 2 and not module.startswith("fusion_datasets.testing"):  # the kit sits apart
            drivers = sorted({_module(name) for _, name in _imports(tree) if _layer(_module(name)) < 2})
            assert not drivers, f"{module} imports {drivers}"


def test_the_laion_backend_builds_on_the_shared_clap_base_not_on_the_transformers_one():
    imported = {_module(name) for _, name in _imports(MODULES["fusion_datasets.clap.laion"])}
    assert "fusion_datasets.clap.base" in imported and "fusion_datasets.clap.embed" not in imported
