"""The layout's lines hold (DESIGN.md: pure core, thin shell).

- `proxy.core` as a whole imports neither aiohttp, the lol-html binding, multidict nor
  yarl: every module in the package is found on disk and imported, so a new module is
  covered without being listed;
- only `proxy/html/gate.py` imports the binding;
- the pure helpers outside core (`proxy.html.codings`, `proxy.html.guard`) stay pure too;
- no import cycle between modules, even under `TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "proxy"
IO_LIBRARIES = ("aiohttp", "lolhtml", "multidict", "yarl")


def modules_under(folder: Path) -> list[str]:
    return sorted(
        ".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in folder.rglob("*.py")
    )


CORE = modules_under(ROOT / "core")
PURE_OUTSIDE_CORE = [
    "proxy.html.attributes",
    "proxy.html.codings",
    "proxy.html.guard",
    "proxy.html.handlers",
    "proxy.html.markup",
    "proxy.html.run",
]


def test_the_core_package_is_found_whole() -> None:
    assert "proxy.core" in CORE and "proxy.core.consent" in CORE and len(CORE) > 8


@pytest.mark.parametrize("module", ["proxy.core", *PURE_OUTSIDE_CORE])
def test_pure_code_imports_no_io_libraries(module: str) -> None:
    names = CORE if module == "proxy.core" else [module]
    code = (
        f"import sys\nfor name in {names!r}:\n    __import__(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {IO_LIBRARIES!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{module} pulls in {result.stdout.strip()}"


def test_core_imports_nothing_outside_core() -> None:
    for path in (ROOT / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 or (path.parent.name != "core" and node.level == 2), (
                    f"{path.relative_to(ROOT)} imports from outside proxy.core (level {node.level})"
                )


def test_only_the_gate_imports_the_binding() -> None:
    importers = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if "import lolhtml" in p.read_text())
    assert importers == ["html/gate.py"]


def _imports(path: Path, module: str) -> set[str]:
    """Modules of ours that `module` (at `path`) imports, TYPE_CHECKING blocks included."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("proxy"):
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    out.add(
                        candidate if (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").exists() else target
                    )
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("proxy"))
    out.discard(module)
    return out


def test_no_import_cycles_even_under_type_checking() -> None:
    graph = {}
    for path in ROOT.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = {m for m in _imports(path, module) if m != "proxy" and not module.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt in graph and not state.get(nxt):
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node)


def test_no_module_is_much_over_600_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py") if (n := len(p.read_text().splitlines())) > 650}
    assert long == {}, f"split these: {long}"
