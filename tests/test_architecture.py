"""The shape of the code: no import circles, a headless engine, the options defined once."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import napari_dissipation
from napari_dissipation.options import OPTIONS

SRC = Path(napari_dissipation.__file__).parent
ENGINE = ("estimate", "simulate", "io", "options", "errors")


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of this package that ``path`` imports, at any depth (lazy imports too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("napari_dissipation"):
                continue
            for alias in node.names:  # ``from . import distributed`` names a module
                sub = f"{target}.{alias.name}"
                out.add(sub if _exists(sub) else target)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("napari_dissipation")}
    out.discard(name)
    return {m for m in out if _exists(m)}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    # The package root only re-exports lazily; every module imports it implicitly.
    return {_module_name(p): _imports(p) - {"napari_dissipation"}
            for p in SRC.rglob("*.py")}


def test_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_engine_imports_no_gui():
    for module, targets in _graph().items():
        if module.split(".")[1:2] and module.split(".")[1] in ENGINE:
            bad = {t for t in targets if ".gui" in t or ".cli" in t}
            assert not bad, f"{module} imports {bad}"
    for path in SRC.rglob("*.py"):
        if "gui" in path.relative_to(SRC).parts:
            continue
        text = path.read_text()
        for word in ("import napari", "from napari ", "from napari.", "qtpy", "magicgui"):
            if path.parent.name == "cli" and path.name == "demo.py":
                continue  # `demo` opens napari, lazily, inside the command
            assert word not in text, f"{path.relative_to(SRC)} mentions {word!r}"


def test_engine_modules_import_without_torch_qt_or_napari():
    code = ("import sys, napari_dissipation.options, napari_dissipation.io, "
            "napari_dissipation.simulate, napari_dissipation.cli; "
            "bad = {'torch', 'qtpy', 'napari', 'magicgui'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_source_file_over_600_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


def test_every_option_is_a_config_field_and_a_fit_flag(capsys):
    from napari_dissipation.cli import build_parser
    from napari_dissipation.estimate import EstimatorConfig

    assert [f for f in EstimatorConfig.__dataclass_fields__] == [o.name for o in OPTIONS]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "--help"])
    text = capsys.readouterr().out
    for o in OPTIONS:
        assert o.cli_flag in text, o.cli_flag


def test_no_function_body_over_80_lines():
    """Counted without the docstring: numpydoc docstrings of the simulators are long."""
    long = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    n -= first.end_lineno - first.lineno + 1
                if n > 80:
                    long[f"{path.relative_to(SRC)}:{node.name}"] = n
    assert not long, long
