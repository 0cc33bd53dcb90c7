"""The shape the code keeps (issue #25): modules by concern and of a readable size, a library that
never reads the command line or imports a recipe, thin recipes, and the top-level names programs use."""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import skinacc

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "skinacc"
MAX_MODULE_LINES = 420  # "a few hundred lines each"; the bound is ~400


def _modules() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def test_no_module_is_long():
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these by concern: {long}"


def test_only_the_command_line_reads_argv_and_nothing_imports_a_recipe():
    for p in _modules():
        tree = ast.parse(p.read_text())
        rel = p.relative_to(LIBRARY).as_posix()
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "argv"
                and getattr(node.value, "id", "") == "sys"
            ):
                assert rel.startswith("cli/"), (
                    f"skinacc/{rel} reads sys.argv: take the arguments as a parameter"
                )
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                assert not any(n.split(".")[0] == "recipes" for n in names), f"skinacc/{rel} imports a recipe"


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("layer", ["config", "data", "metrics", "checkpoint", "rundir.py"])
def test_lower_layers_never_import_the_run_or_the_command_line(layer):
    # Config validation and data loading are what a run is built from; an import the other way (even a
    # lazy one inside a check) ties every caller of the config to the training code.
    base = LIBRARY / layer
    for p in [base] if base.suffix else sorted(base.rglob("*.py")):
        above = {n for n in _imported(p) if n.split(".")[:2] in (["skinacc", "run"], ["skinacc", "cli"])}
        assert not above, f"skinacc/{p.relative_to(LIBRARY).as_posix()} imports {sorted(above)}"


def test_recipes_only_hand_over_to_the_command_line():
    for p in sorted((ROOT / "recipes").glob("*.py")):
        lines = p.read_text().splitlines()
        assert len(lines) < 100, f"{p.name}: {len(lines)} lines; recipes parse and call the library"
        assert "run_command(" in p.read_text(), p.name


def test_every_library_module_imports():
    for m in pkgutil.walk_packages(skinacc.__path__, "skinacc."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)


@pytest.mark.parametrize("name", sorted(skinacc._EXPORTS))
def test_top_level_names(name):
    obj = getattr(skinacc, name)
    assert obj.__module__ == skinacc._EXPORTS[name] and obj.__name__ == name


def test_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'fit'"):
        skinacc.fit  # noqa: B018
