"""One way down the layers: helper -> data_platform -> ml_platform -> inference_service -> ops
-> bench. A module may import its own layer and the ones below it, never one above (lazy
imports inside functions count too: they are still arrows)."""

from __future__ import annotations

import ast
from pathlib import Path

from helper.settings import REPO_ROOT

LAYERS = ("helper", "data_platform", "ml_platform", "inference_service", "ops", "bench")


def upward_imports(root: Path) -> list[str]:
    """Every `file:line layer -> module` whose target sits above the importing layer."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    found = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    targets = [node.module]
                else:
                    continue
                for target in targets:
                    top = target.split(".")[0]
                    if rank.get(top, -1) > rank[layer]:
                        found.append(f"{path.relative_to(root)}:{node.lineno} {layer} -> {target}")
    return found


def test_no_layer_imports_a_higher_one():
    assert upward_imports(REPO_ROOT) == []


def test_the_check_sees_top_level_and_lazy_upward_imports(tmp_path):
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "helper" / "a.py").write_text("import ops.summary\n")
    (tmp_path / "data_platform" / "b.py").write_text(
        "from helper.settings import Settings\n\ndef f():\n    from ml_platform import tune\n"
    )
    (tmp_path / "ops" / "c.py").write_text("from inference_service import proxy\n")
    assert upward_imports(tmp_path) == [
        "helper/a.py:1 helper -> ops.summary",
        "data_platform/b.py:4 data_platform -> ml_platform",
    ]
