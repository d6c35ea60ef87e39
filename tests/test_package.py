"""The package's shape: imports that run one way, modules and classes a reader can hold, and
the command line as the only reader of argparse's namespace."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "snapcam"
MODULE_MAX_LINES = 400
CLASS_MAX_LINES = 200


def modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))}


def imported_modules(tree: ast.Module, known: set[str]) -> set[str]:
    """The package's modules a module imports, at any depth (type-only imports too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [alias.name for alias in node.names]
            found.update(name.split(".")[0] for name in names)
    return found & (known - {"__init__"})


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path of module names, or [] if there is none."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str]:
        if name in path:
            return path[path.index(name) :] + [name]
        if name in done:
            return []
        for imported in sorted(graph[name]):
            found = visit(imported, path + [name])
            if found:
                return found
        done.add(name)
        return []

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return []


def test_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_package_imports_run_one_way():
    trees = modules()
    graph = {name: imported_modules(tree, set(trees)) for name, tree in trees.items()}

    assert cycle(graph) == []


def test_the_data_contract_module_imports_nothing_of_snaps():
    trees = modules()

    assert imported_modules(trees["shot"], set(trees)) == set()


def test_no_module_is_over_400_lines():
    lengths = {path.name: len(path.read_text().splitlines()) for path in PACKAGE.glob("*.py")}

    assert {name: n for name, n in lengths.items() if n > MODULE_MAX_LINES} == {}


def test_no_class_is_over_200_lines():
    long_classes = {
        f"{name}.{node.name}": node.end_lineno - node.lineno + 1
        for name, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > CLASS_MAX_LINES
    }

    assert long_classes == {}


def test_only_the_command_line_reads_argparses_namespace():
    readers = {
        name
        for name, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "argparse"
        and node.attr == "Namespace"
    }

    assert readers <= {"cli"}


def test_each_test_name_is_in_one_file():
    files_by_name: dict[str, set[str]] = {}
    for path in ROOT.joinpath("tests").rglob("test_*.py"):
        if ".cache" in path.parts:
            continue
        for name in re.findall(r"^\s*def (test_\w+)", path.read_text(), re.MULTILINE):
            files_by_name.setdefault(name, set()).add(str(path.relative_to(ROOT)))

    assert {name: files for name, files in files_by_name.items() if len(files) > 1} == {}
