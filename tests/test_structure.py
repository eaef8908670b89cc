"""The package's dependency order: every import, including those inside functions, points down.

Imports inside functions are how an import cycle hides (the module loads, the cycle bites later or
never), so they count here like top-level ones; only ``if TYPE_CHECKING:`` blocks are skipped.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import irstd

PACKAGE = Path(irstd.__file__).resolve().parent

# Bottom to top; a module may import from its own layer or any layer below. The README's layout
# section describes the same order.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("irstd", "irstd.errors", "irstd._lazy", "irstd.registry")),
    ("data and metrics", ("irstd.data", "irstd.data.*", "irstd.metrics", "irstd.metrics.*")),
    # the noise schedules and samplers of the diffusion models: below the networks that use them
    ("diffusion samplers", ("irstd.diffusion", "irstd.diffusion.*")),
    (
        "detectors and corruptions",
        ("irstd.models", "irstd.models.*", "irstd.classic", "irstd.classic.*", "irstd.corruptions", "irstd.corruptions.*",
         "irstd.domain", "irstd.domain.*"),
    ),
    (
        "engine core",
        (
            "irstd.engine",
            "irstd.engine.seed",
            "irstd.engine.device",
            "irstd.engine.distributed",
            "irstd.engine.checkpoint",
            "irstd.engine.losses",
            "irstd.engine.optim",
            "irstd.engine.evaluator",
            "irstd.engine.loader",
        ),
    ),
    ("training strategies", ("irstd.strategies", "irstd.strategies.*")),
    ("configuration", ("irstd.config",)),
    ("runners", ("irstd.engine.*", "irstd.profiling")),
    ("command line", ("irstd.commands", "irstd.commands.*", "irstd.cli", "irstd.__main__")),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _layer(module: str) -> int:
    # The first layer whose patterns match, so exact names win over the runners' wildcard.
    for i, (_, patterns) in enumerate(LAYERS):
        if module in patterns:
            return i
    for i, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_structure.py")


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for a in node.names:
                full = f"{source}.{a.name}"
                names.add(full if full in modules else source)
    deps = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        # A module always loads its own parent packages: that is not a dependency on them.
        if name and name != module and not module.startswith(name + "."):
            deps.add(name)
    return deps


def test_every_module_has_a_layer():
    for module in _modules():
        _layer(module)


def test_imports_point_down_the_layers():
    modules = _modules()
    upward = []
    for module, path in sorted(modules.items()):
        for dep in sorted(_imports(module, path, modules)):
            if _layer(dep) > _layer(module):
                upward.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {dep} ({LAYERS[_layer(dep)][0]})")
    assert not upward, "imports against the dependency order:\n" + "\n".join(upward)


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_checker_sees_function_level_imports(tmp_path):
    # The checks above are only worth something if an import inside a function is seen.
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from irstd.engine.trainer import Trainer\n    return Trainer\n")
    modules = _modules()
    assert _imports("irstd.data.io", path, modules) == {"irstd.engine.trainer"}
