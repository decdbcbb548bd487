"""The package's shape: no import cycles (lazy and type-only imports count), small files, short module
docstrings, module paths in docs that exist, and no private hooks into the pipeline from outside it."""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path
from typing import Dict, List, Optional, Set

PACKAGE = Path(__file__).resolve().parent.parent / "feedstock"
ROOT = PACKAGE.parent
MAX_LINES = 400
MAX_DOC_LINES = 24  # a module docstring says what and why; designs go to docs/, measurements to bench/


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> Set[str]:
    """feedstock modules ``path`` imports: at the top, inside functions and under TYPE_CHECKING alike
    (a type-only import still ties the two modules: neither can be read or moved without the other)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("feedstock")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("feedstock"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _graph() -> Dict[str, Set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        graph[name] = {m for m in _imports(path, name) if m in files and m != name}
    return graph


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Cycles found by a depth-first search (imports of a package's own __init__ from inside it excluded)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if node.startswith(nxt + "."):
                continue  # a submodule using its package's re-exports
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles():
    graph = _graph()
    assert "feedstock.stream.definition" in graph and "feedstock.pipeline.loader" in graph
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles[:10])


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_lazy_and_type_only_imports_are_edges(tmp_path):
    pkg = tmp_path / "feedstock" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    import feedstock.sub.c\n")
    assert "feedstock.sub.b" in _imports(pkg / "a.py", "feedstock.sub.a")
    assert {"feedstock.sub.a", "feedstock.sub.c"} <= _imports(pkg / "b.py", "feedstock.sub.b")


def test_package_files_are_small_and_documented():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"
    docs = {str(p.relative_to(PACKAGE)): ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")), clean=False)
            for p in PACKAGE.rglob("*.py")}
    undocumented = [name for name, doc in docs.items() if doc is None]
    assert not undocumented, f"modules without a docstring: {undocumented}"
    wordy = {name: n for name, doc in docs.items() if doc and (n := len(doc.splitlines())) > MAX_DOC_LINES}
    assert not wordy, f"module docstrings over {MAX_DOC_LINES} lines (move designs to docs/): {wordy}"


# ----- module paths named in docstrings and docs ---------------------------------------------------
_DOTTED = re.compile(r"(?<![\w./-])(\.{0,3}feedstock(?:\.\w+)+|:mod:`(\.+\w+(?:\.\w+)*)`)")
_PATH = re.compile(r"(?<![\w./-])((?:feedstock|docs|bench|tests)/[\w./-]*\w\.(?:py|md))")


def _top_names(path: Path) -> Set[str]:
    """Names a module defines or imports at its top level (what ``module.name`` may refer to)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: Set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.If):
            names |= {a.asname or a.name for n in ast.walk(node) if isinstance(n, ast.ImportFrom) for a in n.names}
    if "__getattr__" in names:  # lazy re-exports: the keys of its _LAZY table
        names |= {k.value for n in ast.walk(tree) if isinstance(n, ast.Dict)
                  for k in n.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return names


def _module_file(dotted: str) -> Optional[Path]:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _resolves(dotted: str) -> bool:
    """``feedstock.a.b.name``: the longest module prefix exists and defines what follows (one attribute
    deep, or a class's attribute: ``Loader.leased``)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(".".join(parts[:cut]))
        if module is not None:
            rest = parts[cut:]
            return not rest or rest[0] in _top_names(module)
    return False


def _named_modules(text: str, module: Optional[str]) -> List[str]:
    """Dotted feedstock names in ``text``; ``:mod:`.x``` is taken relative to ``module``'s package."""
    found = []
    for m in _DOTTED.finditer(text):
        name = m.group(2) or m.group(1)
        if name.startswith("."):
            if module is None:
                continue
            level = len(name) - len(name.lstrip("."))
            anchor = module.split(".")[: len(module.split(".")) - level]
            name = ".".join(anchor + [name.lstrip(".")])
        found.append(name.rstrip("."))
    return found


def _prose(source: str) -> str:
    """A module's docstrings and comments (string literals in code, logger names say, are not prose)."""
    tree = ast.parse(source)
    docs = [ast.get_docstring(n, clean=False) or "" for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    comments = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT]
    return "\n".join(docs + comments)


def _texts():
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        yield path, _prose(path.read_text(encoding="utf-8")), package + ".x"
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]:
        yield path, path.read_text(encoding="utf-8"), None


def test_module_paths_named_in_docstrings_and_docs_exist():
    missing = []
    for path, text, module in _texts():
        where = path.relative_to(ROOT)
        missing += [f"{where}: {p}" for p in _PATH.findall(text) if not (ROOT / p).exists()]
        missing += [f"{where}: {name}" for name in _named_modules(text, module) if not _resolves(name)]
    assert not missing, "names of modules or files that do not exist:\n" + "\n".join(missing)


def test_the_path_checker_catches_a_wrong_name():
    assert _resolves("feedstock.stream.definition") and _resolves("feedstock.stream.definition.Stream")
    assert _resolves("feedstock.pipeline.Loader") and _resolves("feedstock.chw.to_hwc")
    assert not _resolves("feedstock.stream_forms") and not _resolves("feedstock.stream.definition.Nope")
    assert _named_modules("see :mod:`.split` and feedstock.a.b.", "feedstock.pipeline.x") == \
        ["feedstock.pipeline.split", "feedstock.a.b"]
    assert _PATH.findall("in `docs/nope.md` and feedstock/pipeline/run.py.") == ["docs/nope.md",
                                                                                "feedstock/pipeline/run.py"]


# ----- no private hooks into the pipeline ---------------------------------------------------------
HOOKED = ["loader.py", "run.py", "pool.py", "slots.py", "split.py", "resources.py"]
# tests that must reach inside (and say why); nothing in feedstock/ or bench/ may
WHITE_BOX = {"tests/stream/test_error_spelling.py"}  # the pool's timeout check driven on a fake clock


def _private_names() -> Set[str]:
    """``_name`` attributes and methods of the Loader, its runs, slot books and pools."""
    names: Set[str] = set()
    for name in HOOKED:
        text = (PACKAGE / "pipeline" / name).read_text(encoding="utf-8")
        names |= set(re.findall(r"self\.(_[a-z]\w*)\s*(?::[^=\n]*)?=", text))
        names |= set(re.findall(r"def (_[a-z]\w*)\(", text))
    return names


def _private_uses(text: str, names: Set[str]) -> List[str]:
    """``x._name`` for a pipeline private ``_name`` on anything but ``self``/``cls``."""
    pattern = re.compile(r"(?<![\w.])(?!self\.|cls\.)([A-Za-z_]\w*(?:\.\w+)*)\.(%s)\b" % "|".join(sorted(names)))
    return [m.group(0) for m in pattern.finditer(text)]


def test_nothing_outside_the_pipeline_touches_its_private_names():
    names = _private_names()
    assert {"_res", "_run", "_iterate", "_new_run", "_next_tid"} <= names
    found = []
    for base in ("feedstock", "bench", "tests"):
        for path in sorted((ROOT / base).rglob("*.py")):
            if path.parent == PACKAGE / "pipeline" or path == Path(__file__).resolve():
                continue
            if str(path.relative_to(ROOT)) in WHITE_BOX:
                continue
            found += [f"{path.relative_to(ROOT)}: {use}" for use in _private_uses(path.read_text(), names)]
    assert not found, "private pipeline names used outside feedstock/pipeline/ (add a public seam):\n" + \
        "\n".join(found)
    assert _private_uses("loader._res.pool and self._res and fast._iterate(keep=True)", names) == \
        ["loader._res", "fast._iterate"]
