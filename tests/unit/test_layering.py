"""The import graph layers cleanly: schemas, models -> pipeline -> connectors -> agents -> ops. No module
imports from a higher floor (imports inside functions count too), there are no import cycles, and only ops/
opens the shared resources."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER = {"schemas": 0, "models": 0, "pipeline": 1, "connectors": 2, "agents": 3, "ops": 4}
# Calls that open a shared resource, and the modules allowed to make them: each resource's own module, and ops/.
OPENERS = {
    "open_sql": {"connectors.sql.engine"},
    "create_engine": {"connectors.sql.engine"},
    "open_vectors": {"connectors.vectors"},
    "open_media_store": {"connectors.media"},
    "AsyncProducer": {"pipeline.kafka"},
    "Producer": {"pipeline.kafka"},  # confluent-kafka's, wrapped by AsyncProducer
    "FaceModels.load": {"models.faces"},
}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for package in LAYER:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = ast.parse(path.read_text(), str(path))
    return out


MODULES = _modules()


def _imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m in MODULES}


GRAPH = {name: _imports(tree) - {name} for name, tree in MODULES.items()}


def _floor(module: str) -> int:
    return LAYER[module.split(".")[0]]


def test_no_import_runs_up_a_floor() -> None:
    upward = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps if _floor(d) > _floor(m))
    sideways = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps
                      if _floor(m) == _floor(d) == 0 and m.split(".")[0] != d.split(".")[0] and m.startswith("models"))
    assert not upward, upward
    assert not sideways, sideways  # models/ is inference only: no messages


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = [stack.pop()]
            while component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, cycles


def _called(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        if isinstance(f.value, ast.Name) and f"{f.value.id}.{f.attr}" in OPENERS:
            return f"{f.value.id}.{f.attr}"
        return f.attr
    return None


def test_only_ops_opens_resources() -> None:
    """Agents, the pipeline and the connectors get their SQL engine, vector store, media store, producer and
    face models from the composition root (ops/root.py); only the resource's own module may construct it."""
    found = []
    for name, tree in MODULES.items():
        if name.startswith("ops"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (called := _called(node)) in OPENERS and name not in OPENERS[called]:
                found.append(f"{name}:{node.lineno} calls {called}")
            # passing the opener itself (e.g. run_in_executor(None, open_media_store, ...)) counts as well
            for arg in node.args if isinstance(node, ast.Call) else ():
                if isinstance(arg, ast.Name) and arg.id in OPENERS and name not in OPENERS[arg.id]:
                    found.append(f"{name}:{node.lineno} passes {arg.id}")
    assert not found, found
