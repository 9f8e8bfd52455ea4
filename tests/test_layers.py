"""The package's import order, read from its source: layers import only downwards, no module
imports itself back through others (lazy imports inside functions included), and only the
SynthWorld modules import SynthWorld."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "unike_interp"

#: Bottom to top. A module may import its own layer and the layers below it, never one above.
LAYERS = [
    {"__init__", "conditioning", "devices", "fields", "paths", "progress", "provenance"},  # the ground floor
    {"data"}, {"world"}, {"models"}, {"editing"}, {"judges"}, {"bench"}, {"interp"},
    {"cli", "demo", "results", "__main__"},                  # the applications and the results API
]
#: SynthWorld itself (its world and its data); only these modules may import it.
SYNTHWORLD = ("unike_interp.world", "unike_interp.data.synthworld")
SYNTHWORLD_USERS = ("unike_interp.world", "unike_interp.data.synthworld", "unike_interp.models.synthworld",
                    "unike_interp.judges.verifier", "unike_interp.cli", "unike_interp.demo")


def _module_name(path: Path) -> str:
    parts = ["unike_interp", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every ``unike_interp`` module ``path`` imports, anywhere in the file (resolved, best effort)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("unike_interp")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("unike_interp"):
                mod = node.module
            else:
                continue
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from . import rome` imports a module
    return out


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    if top == "testing":
        return len(LAYERS)  # test helpers: above everything, imported by nothing at runtime
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: its top-level name {top!r} is in no layer of this test; add it to LAYERS")


def test_layers_import_only_downwards():
    bad = [f"{m} (layer {_layer(m)}) imports {i} (layer {_layer(i)})"
           for m, deps in GRAPH.items() for i in deps if _layer(i) > _layer(m)]
    assert not bad, "imports against the layer order:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    """Lazy imports count: a cycle through a function-level import is still a cycle."""
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in sorted(GRAPH[m]):
            # a package's __init__ re-exporting its modules is not a cycle with them
            if not (d.startswith(m + ".") and MODULES[m].name == "__init__.py"):
                visit(d)
        stack.pop()

    for m in sorted(GRAPH):
        visit(m)
    cycles = [c for c in cycles if not any(MODULES[x].name == "__init__.py" and c[i + 1].startswith(x + ".")
                                           for i, x in enumerate(c[:-1]))]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_only_synthworld_modules_import_synthworld():
    bad = [f"{m} imports {i}" for m, deps in GRAPH.items() for i in deps
           if i.startswith(SYNTHWORLD) and not m.startswith(SYNTHWORLD_USERS)]
    assert not bad, "SynthWorld imported outside its fence:\n" + "\n".join(sorted(bad))


def test_the_runtime_never_imports_the_testing_module():
    bad = [f"{m} imports {i}" for m, deps in GRAPH.items() for i in deps
           if i.startswith("unike_interp.testing") and not m.startswith("unike_interp.testing")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", ["unike_interp.bench.pipeline", "unike_interp.interp.analyze"])
def test_the_checker_sees_lazy_imports(module):
    """The checker itself reads function-level imports (it would pass vacuously otherwise)."""
    assert any(i.startswith("unike_interp.") for i in GRAPH[module])
