"""The package's shape a newcomer relies on: short functions where the run logic lives, light modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "retinalight"


def test_no_function_over_60_lines_in_the_package():
    files = sorted(PACKAGE.rglob("*.py"))
    long = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_run_folders_and_summaries_load_without_lightning():
    """Summaries and reports read run folders through `rundirs`, which imports no training stack."""
    code = "import sys, retinalight.rundirs, retinalight.summary; print('lightning' in sys.modules, 'torchmetrics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def module_imports() -> dict[str, set[str]]:
    """{module: the retinalight modules it imports}, inside functions too: a deferred import hides a circle, it
    does not remove it."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("retinalight"):
                names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
        graph[module] = names
    return {module: {n for n in names if n in graph and n != module} for module, names in graph.items()}


def test_no_import_circle():
    graph, state, path, circles = module_imports(), {}, [], []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                circles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not circles, circles
    assert "retinalight.data.datasets.base" in graph["retinalight.data.datasets.drive"]  # the walk sees the package


def test_library_modules_never_import_the_command_line_helpers():
    """cli.py serves entry points (modules with a `main`, or __main__.py); library code takes its data root
    and option values from retinalight.data.io and retinalight.config instead."""
    import ast

    package = Path(__file__).resolve().parent.parent / "retinalight"
    offenders = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imports_cli = any(
            isinstance(node, ast.ImportFrom)
            and node.module == "retinalight.cli"
            or isinstance(node, ast.Import)
            and any(a.name == "retinalight.cli" for a in node.names)
            for node in ast.walk(tree)
        )
        entry_point = path.name == "__main__.py" or any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
        if imports_cli and not entry_point and path.name != "cli.py":
            offenders.append(path.relative_to(package).as_posix())
    assert not offenders, offenders


def test_every_registered_dataset_has_its_datamodule_named_in_the_source():
    from retinalight.data import datamodules

    for name, cls in datamodules.DATAMODULES.items():
        assert getattr(datamodules, cls.__name__, None) is cls, f"{cls.__name__} = DATAMODULES[{name!r}] is missing"
    assert "globals().update" not in Path(datamodules.__file__).read_text()
