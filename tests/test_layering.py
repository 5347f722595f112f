"""The layer order of DESIGN.md, enforced: a lower layer never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "advrobust"
ORDER = ["models", "data", "attacks", "metrics", "training", "study"]
# Which advrobust subpackages each layer may import (besides private top-level helpers).
ALLOWED: dict[str, set[str]] = {
    "models": set(),
    "data": set(),
    "attacks": set(),
    "metrics": {"attacks"},
    "training": {"attacks", "metrics", "data"},
    "study": {"models", "data", "attacks", "metrics", "training"},
}


def _imported_layers(path: Path, layer: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    depth = len(path.relative_to(PACKAGE).parts) - 1  # folders below advrobust/
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names = [node.module]
            elif node.level > 0:
                # Resolve the relative import against the file's package.
                pkg = list(path.relative_to(PACKAGE).parts[:-1])
                up = node.level - 1
                if up > depth:
                    continue
                base = pkg[: len(pkg) - up] if up else pkg
                mod = ".".join(["advrobust", *base, *([node.module] if node.module else [])])
                names = [mod]
                if not node.module:
                    names = [f"{mod}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "advrobust" and len(parts) > 1 and parts[1] in ORDER:
                found.add(parts[1])
    found.discard(layer)
    return found


@pytest.mark.parametrize("layer", ORDER)
def test_layer_imports_only_lower_layers(layer: str) -> None:
    folder = PACKAGE / layer
    assert folder.is_dir(), f"missing layer {layer}"
    bad: list[str] = []
    for path in sorted(folder.rglob("*.py")):
        extra = _imported_layers(path, layer) - ALLOWED[layer]
        if extra:
            bad.append(f"{path.relative_to(PACKAGE)} imports {sorted(extra)}")
    assert not bad, "imports against the layering of DESIGN.md:\n" + "\n".join(bad)


def test_top_level_package_stays_small() -> None:
    init = (PACKAGE / "__init__.py").read_text(encoding="utf-8")
    tree = ast.parse(init)
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert all(m.lstrip(".").split(".")[0] not in ORDER for m in imported)


def test_public_names_are_reexported_explicitly() -> None:
    import importlib

    for layer in ORDER:
        module = importlib.import_module(f"advrobust.{layer}")
        names = getattr(module, "__all__", None)
        assert names, f"advrobust.{layer} must define __all__"
        for name in names:
            assert hasattr(module, name), f"advrobust.{layer}.__all__ lists missing {name}"
