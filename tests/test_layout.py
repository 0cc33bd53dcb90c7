"""The shape the code keeps (issue #25): modules by concern and of a readable size, a library that
never reads the command line or imports a recipe, thin recipes, and the top-level names programs use."""

import ast
import importlib
import pkgutil
import warnings
from pathlib import Path

import pytest

import skinacc

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "skinacc"
#: A module past this many lines is reported (a warning) as one to split by concern; past the hard limit
#: the test fails.
WARN_MODULE_LINES, MAX_MODULE_LINES = 500, 800


def _modules() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def test_modules_stay_readable():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in _modules()}
    long = {p: n for p, n in sizes.items() if n > WARN_MODULE_LINES}
    if long:
        warnings.warn(f"modules past {WARN_MODULE_LINES} lines, to split by concern: {long}", stacklevel=1)
    assert all(n <= MAX_MODULE_LINES for n in sizes.values()), f"split these by concern: {long}"


def _module_names() -> dict[str, Path]:
    names = {}
    for p in _modules():
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return names


def _import_graph() -> dict[str, set[str]]:
    """Module -> the library modules it imports (at the top, inside functions or for type checking)."""
    names = _module_names()
    graph: dict[str, set[str]] = {}
    for name, p in names.items():
        package = name if p.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                for a in node.names:  # `from skinacc.x import y`: the submodule y, else the module x
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in names else base)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m in names and m != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    # Two modules that import each other (even lazily, or only for type hints) are one concern split in
    # two, or a lower layer reaching up: both make every change touch both.
    assert not _circles(_import_graph()), "import circles"


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
