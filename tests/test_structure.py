"""The package's shape a newcomer relies on: short functions where the run logic lives, light modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "retinalight"


def test_no_function_over_60_lines_in_training_and_experiments():
    files = [*sorted((PACKAGE / "training").glob("*.py")), PACKAGE / "experiments.py", PACKAGE / "rundirs.py"]
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
