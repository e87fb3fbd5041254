"""The layering of docs/architecture.md and the private-name rule, checked on the source tree."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cross_package_private_imports(package_dir: Path) -> list[str]:
    """``from fluid.X import _name`` or ``from fluid.X._module import ...`` in a package other than X (top-level
    subpackages of ``package_dir``; a top-level module is its own package). Returns "file:line: ..." lines."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).parts
        own = parts[0] if len(parts) > 1 else Path(parts[0]).stem
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                continue
            module = node.module.split(".")
            if module[0] != package_dir.name or len(module) < 2 or module[1] == own:
                continue
            private_module = any(p.startswith("_") and not p.startswith("__") for p in module[1:])
            for alias in node.names:
                private_name = alias.name.startswith("_") and not alias.name.startswith("__")
                if private_module or private_name:
                    found.append(f"{path.relative_to(package_dir.parent)}:{node.lineno}: from {node.module} "
                                 f"import {alias.name}")
    return found


def test_no_private_name_is_imported_across_packages():
    assert cross_package_private_imports(ROOT / "fluid") == []


def test_the_private_import_check_finds_both_kinds(tmp_path):
    pkg = tmp_path / "fluid"
    for folder in ("a", "b"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "a" / "_hidden.py").write_text("x = 1\n")
    (pkg / "a" / "ok.py").write_text("from fluid.a._hidden import x\n")  # inside its own package: allowed
    (pkg / "b" / "bad.py").write_text("from fluid.a._hidden import x\nfrom fluid.a.ok import _y, z\n")
    assert cross_package_private_imports(pkg) == ["fluid/b/bad.py:1: from fluid.a._hidden import x",
                                                  "fluid/b/bad.py:2: from fluid.a.ok import _y"]


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint is not None, "lint-imports is missing: pip install -e '.[dev]' installs import-linter"
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout
