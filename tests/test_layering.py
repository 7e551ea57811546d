"""The import arrows run one way: command line -> runner, builders, hub, eval, train -> steps -> media,
runtime and the other plumbing; the test kit is imported by tests and the CLI's and demo's tiny paths only.

Imports are read with ``ast`` (nothing is imported), each with the top-level function it sits in, so a
lazy import counts as much as one at the top of a module.
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
    "experts": 2, "llm": 2, "clap": 2, "prompts": 2,
}
BOTTOM = 3  # media, media_files, runtime, files, loading, layout, config, errors, http_errors, labels, ...
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
        if isinstance(top, ast.If) and ast.unparse(top.test) == "TYPE_CHECKING":
            continue  # names for annotations only: nothing is imported when the code runs
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


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], BOTTOM) if len(parts) > 1 else BOTTOM


def _crossings() -> set[tuple[str, str, str]]:
    """``(module, function, imported module)`` for each import against the arrows."""
    found = set()
    for module, tree in MODULES.items():
        if module.startswith("fusion_datasets.testing"):
            continue
        for function, imported in _imports(tree):
            target = _module(imported)
            if not target.startswith("fusion_datasets"):
                continue
            kit = target.startswith("fusion_datasets.testing") and (module, function) not in TEST_KIT_ALLOWED
            # beside the runner: builders, evaluation and training read outputs, they do not run the pipeline
            beside = _layer(module) == 1 and not module.startswith("fusion_datasets.pipeline") \
                and target.startswith("fusion_datasets.pipeline")
            if kit or beside or _layer(target) < _layer(module):
                found.add((module, function, target))
    return found


def test_imports_run_one_way_and_the_test_kit_stays_in_tests():
    assert _crossings() == set(), "imports against the arrows (module, function, imported)"


def test_the_steps_and_the_plumbing_import_no_driver():
    for module, tree in MODULES.items():
        if _layer(module) >= 2 and not module.startswith("fusion_datasets.testing"):  # the kit sits apart
            drivers = sorted({_module(name) for _, name in _imports(tree) if _layer(_module(name)) < 2})
            assert not drivers, f"{module} imports {drivers}"


def test_the_laion_backend_builds_on_the_shared_clap_base_not_on_the_transformers_one():
    imported = {_module(name) for _, name in _imports(MODULES["fusion_datasets.clap.laion"])}
    assert "fusion_datasets.clap.base" in imported and "fusion_datasets.clap.embed" not in imported
