"""The layout (docs/architecture.md): scripts at the root, the library in the package `sst`; no import cycle,
counting imports made inside functions too; the package never imports a script, except the definition of the
network (model.py) where a model kind builds it; the scripts within their line budgets."""
import ast

from conftest import ROOT

SCRIPTS = {p.stem: p for p in ROOT.glob("*.py")}
PACKAGE = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
           for p in (ROOT / "sst").rglob("*.py")}
MODULES = {**SCRIPTS, **PACKAGE}
# The package modules that may import model.py: the registry that builds the network from a config, and what
# exists only for the network (its training loop, its accelerator, its figures).
IMPORT_MODEL = {"sst.models.kinds", "sst.training.fastcpu", "sst.reporting.figures",
                "sst.training.loop"}


def imports_of(path) -> set[str]:
    """The project modules `path` imports anywhere in it (module level or inside functions); those under
    `if TYPE_CHECKING:` only name types for annotations and never run, so they do not count."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return {m for m in found if m in MODULES} - {name}


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
    assert {"sst.config", "sst.fileio", "sst.results.checkpoints", "run", "model"} <= set(graph)


def test_the_package_imports_no_script():
    """Nothing in sst/ runs back up to a script: only the modules of IMPORT_MODEL reach the definition."""
    for name, path in PACKAGE.items():
        scripts = {m for m in imports_of(path) if m in SCRIPTS}
        allowed = {"model"} if name in IMPORT_MODEL else set()
        assert scripts <= allowed, f"{name} imports {sorted(scripts - allowed)}"


def test_the_root_holds_the_scripts_and_the_package():
    assert set(SCRIPTS) == {"run", "Preprocess", "model", "utils"}
    assert (ROOT / "sst" / "__init__.py").is_file()


def test_line_budgets():
    lines = {name: len(SCRIPTS[name].read_text(encoding="utf-8").splitlines()) for name in ("model", "utils", "run")}
    assert lines["model"] < 650 and lines["utils"] < 600 and lines["run"] < 600, lines


def test_the_readme_is_read_in_five_minutes_and_its_links_and_the_docs_links_resolve():
    """README.md within 200 lines (detail lives in docs/); every relative link of README.md, docs/*.md,
    bench/README.md and tests/README.md names a file or folder of the repository."""
    import re

    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200
    broken = []
    for page in [ROOT / "README.md", ROOT / "bench" / "README.md", ROOT / "tests" / "README.md",
                 *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
