"""The package layering, read from the source's import statements (``ast``) and checked once
for real in a fresh interpreter:

* the API process never imports torch (nor transformers, peft, …): not at import, not while the
  app is built;
* routes (``*/routes.py`` and ``api/``) never import a database driver; only the store does;
* ``training`` and ``inference`` share only the model layer (``ftserve.modeling``): neither
  imports the other, and the model layer imports neither (nor anything else of ftserve).

An import inside a function runs only when the function does, so it counts for "never imports"
rules but not for what importing a module pulls in; imports under ``if TYPE_CHECKING:`` never
run and never count.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "ftserve"
HEAVY = frozenset(
    {"torch", "transformers", "peft", "safetensors", "tokenizers", "accelerate", "bitsandbytes"}
)
DRIVERS = frozenset({"sqlite3", "psycopg", "psycopg_pool", "psycopg2", "asyncpg", "aiosqlite"})
MODEL_LAYER = "ftserve.modeling"


@dataclass(frozen=True)
class Imports:
    eager: frozenset[str]  # run when the module is imported
    every: frozenset[str]  # eager ones and those inside functions


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.AST, bool]]:
    """Every import statement under ``node`` and whether it sits inside a function."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _walk_one(other, in_function)
            continue
        yield from _walk_one(child, in_function)


def _walk_one(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.AST, bool]]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, in_function
        return
    nested = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
    yield from _walk(node, in_function or nested)


def _targets(node: ast.AST, module: str, is_package: bool) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    # ``from package import submodule`` imports the submodule too.
    found = {base}
    found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules())
    return found


def _with_parents(names: set[str]) -> set[str]:
    """Importing ``a.b.c`` runs ``a`` and ``a.b`` first."""
    out = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return out


@functools.cache
def imports_of(module: str) -> Imports:
    path = modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    eager: set[str] = set()
    every: set[str] = set()
    for node, in_function in _walk(tree, False):
        targets = _with_parents(_targets(node, module, is_package))
        every |= targets
        if not in_function:
            eager |= targets
    return Imports(frozenset(eager), frozenset(every))


def eager_closure(root: str) -> dict[str, str]:
    """Every module importing ``root`` runs (ftserve's and others'), each with the ftserve
    module that imports it first (for the failure message)."""
    seen: dict[str, str] = {}
    queue = [m for m in _with_parents({root}) if m in modules()]
    for m in queue:
        seen[m] = m
    while queue:
        current = queue.pop()
        for target in imports_of(current).eager:
            if target in seen:
                continue
            seen[target] = current
            if target in modules():
                queue.append(target)
    return seen


def top(name: str) -> str:
    return name.partition(".")[0]


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# -- the API process ---------------------------------------------------------------------------


def test_the_api_imports_no_model_library() -> None:
    closure = eager_closure("ftserve.api.app")
    heavy = sorted(
        f"{name} (imported by {by})" for name, by in closure.items() if top(name) in HEAVY
    )
    assert heavy == []
    # The torch-free parts of the model layer are the ones the API may use.
    assert "ftserve.modeling.sources" in closure
    assert not any(within(name, "ftserve.training") for name in closure)


def test_building_the_app_imports_no_model_library(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ftserve.api.app import create_app\n"
        "from ftserve.config import Settings\n"
        "create_app(Settings(data_dir=Path(sys.argv[1]), workers=0), background=False)\n"
        f"print(sorted(m for m in sys.modules if m.partition('.')[0] in {sorted(HEAVY)!r}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- routes and drivers ------------------------------------------------------------------------


def _route_modules() -> list[str]:
    return [
        m
        for m in modules()
        if m.endswith(".routes") or m == "ftserve.api" or m.startswith("ftserve.api.")
    ]


def test_routes_never_import_a_database_driver() -> None:
    found = sorted(
        f"{m} imports {target}"
        for m in _route_modules()
        for target in imports_of(m).every
        if top(target) in DRIVERS
    )
    assert found == []


def test_route_modules_reach_no_driver_but_through_the_store() -> None:
    """What a ``routes.py`` pulls in holds no driver either, except behind ``ftserve.store``
    (the API's services open the store, and only the store module touches its driver)."""
    for route in (m for m in modules() if m.endswith(".routes")):
        closure = eager_closure(route)
        leaks = sorted(
            f"{name} (imported by {by})"
            for name, by in closure.items()
            if top(name) in DRIVERS and not within(by, "ftserve.store")
        )
        assert leaks == [], route


# -- training, inference and the model layer ---------------------------------------------------


def _in(package: str) -> list[str]:
    return [m for m in modules() if within(m, package)]


def test_training_and_inference_share_only_the_model_layer() -> None:
    pairs = (("ftserve.training", "ftserve.inference"), ("ftserve.inference", "ftserve.training"))
    crossings = sorted(
        f"{m} imports {target}"
        for source, other in pairs
        for m in _in(source)
        for target in imports_of(m).every
        if within(target, other)
    )
    assert crossings == []
    for package in ("ftserve.training", "ftserve.inference.engine"):
        assert any(
            within(target, MODEL_LAYER) for m in _in(package) for target in imports_of(m).every
        ), f"{package} no longer uses the model layer"


def test_the_model_layer_stands_on_its_own() -> None:
    outside = sorted(
        f"{m} imports {target}"
        for m in _in(MODEL_LAYER)
        for target in imports_of(m).every
        if within(target, PACKAGE) and target != PACKAGE and not within(target, MODEL_LAYER)
    )
    assert outside == []


def test_the_graph_sees_what_it_checks() -> None:
    """The walker finds lazy, relative and TYPE_CHECKING imports as meant (else every rule above
    would pass on an empty graph)."""
    child = imports_of("ftserve.worker.child")
    assert "ftserve.training.distributed" in child.every
    assert "ftserve.training.distributed" not in child.eager
    assert "ftserve.training.spec" not in imports_of("ftserve.worker.hooks").every
    assert "ftserve.modeling.sources" in imports_of("ftserve.models.registry").eager
    assert "sqlite3" in imports_of("ftserve.store.sqlite").every
    assert "torch" in eager_closure("ftserve.training.trainer")
