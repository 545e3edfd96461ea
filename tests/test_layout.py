"""The core's layout (issue contracts): no import cycle between the project's modules, counting imports made
inside functions too, and model.py, utils.py and run.py within their line budgets."""
import ast

from conftest import ROOT

MODULES = {p.stem: p for p in ROOT.glob("*.py")}


def imports_of(path) -> set[str]:
    """The project modules `path` imports anywhere in it (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return (found & set(MODULES)) - {path.stem}


def test_no_import_cycle():
    graph = {name: imports_of(path) for name, path in MODULES.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(other):] + [name, other]))
            if other not in state:
                visit(other, trail + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert {"config", "fileio", "preprocessed", "checkpoints", "keras_weights"} <= set(graph)


def test_line_budgets():
    lines = {name: len(MODULES[name].read_text(encoding="utf-8").splitlines()) for name in ("model", "utils", "run")}
    assert lines["model"] < 650 and lines["utils"] < 600 and lines["run"] < 600, lines
