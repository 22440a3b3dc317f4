"""The package's imports run one way: every import of a fg3dgs module, at the top of a file
or inside a function, goes to the same or a lower layer of docs/design.md's "Package
layers", and no files or packages import each other in a loop."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fg3dgs"


def documented_layers() -> dict[str, int]:
    """{top-level module or package: layer number} from docs/design.md."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("## Package layers", 1)[1].split("\n## ", 1)[0]
    units = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir()
                                                      if (p / "__init__.py").is_file()}
    layers, current = {}, None
    for line in section.splitlines():
        m = re.match(r"(\d+)\. ", line)
        if m:
            current = int(m.group(1))
        if current is None:
            continue
        for name in re.findall(r"`([a-z_]+)`", line):
            if name in units:
                layers.setdefault(name, current)
    return layers


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, fg3dgs module) of every import in a file, wherever it stands (but under
    ``if TYPE_CHECKING:``, which never runs)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}   # not run: annotations
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("fg3dgs")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("fg3dgs"):
                target = node.module
            else:
                continue
            for a in node.names:       # `from . import x` and `from .pkg import mod`
                sub = f"{target}.{a.name}"
                out.append((node.lineno, sub if module_file(sub) else target))
    return [(line, t) for line, t in out if module_file(t) is not None]


def unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def edges() -> list[tuple[str, int, str]]:
    """(importing module, line, imported module) over the whole package."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        for line, target in imports(path):
            if target != me and not me.startswith(target + ".") and target != "fg3dgs":
                out.append((me, line, target))
    return out


def test_every_module_has_a_documented_layer():
    layers = documented_layers()
    units = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | \
        {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(units - set(layers))
    assert not missing, f"add these to docs/design.md's Package layers: {missing}"
    assert len(set(layers.values())) >= 5


def test_imports_never_go_up_a_layer():
    layers = documented_layers()
    wrong = [f"{src}:{line} imports {dst} (layer {layers[unit(src)]} -> {layers[unit(dst)]})"
             for src, line, dst in edges()
             if unit(src) and unit(dst) and layers[unit(dst)] > layers[unit(src)]]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_between_files_or_packages():
    files, units = defaultdict(set), defaultdict(set)
    for src, _, dst in edges():
        files[src].add(dst)
        if unit(src) and unit(dst) and unit(src) != unit(dst):
            units[unit(src)].add(unit(dst))
    assert not cycles(units), cycles(units)
    assert not cycles(files), cycles(files)


def test_the_walk_sees_function_level_imports_and_finds_cycles():
    # evaluate.validation imports the sync crops inside a function, not at its top
    inner = [t for _, t in imports(PACKAGE / "evaluate" / "validation.py")]
    top = ast.parse((PACKAGE / "evaluate" / "validation.py").read_text()).body
    top_level = {(n.level, n.module) for n in top if isinstance(n, ast.ImportFrom)}
    assert "fg3dgs.sync.crops" in inner and (2, "sync.crops") not in top_level
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    layers = documented_layers()
    assert layers["render"] < layers["model"] < layers["train"] < layers["pipeline"] \
        < layers["cli"]
