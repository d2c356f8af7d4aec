"""The package layout's rules, read from rlexp's own source with ``ast``: no import cycles;
imports run one way (data -> networks -> algos -> run -> cli; envs know no learning; nothing
on the training path reads the analysis tools); at most 8 modules on the top floor; the
collector is the only module on the training path that steps an env; nothing outside
rlexp/networks and the sequence minibatching (rlexp/data/rollout.py) asks whether a policy
is recurrent, and nothing outside the fast path's own room and the algorithm it serves
asks whether it runs (see docs/architecture.md).

Every import counts, the ones inside functions too: a lazy import still ties two modules
together (the PPO <-> fast-path circle this test was written against was two lazy imports).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rlexp"

#: (importing modules, forbidden imports, why): a module matches a prefix when it is that
#: module or inside that package
RULES = [
    (("rlexp.data",), ("rlexp.networks", "rlexp.algos", "rlexp.run", "rlexp.cli", "rlexp.envs"),
     "rollout storage, returns and observations are the floor: they know nothing above them"),
    (("rlexp.networks",), ("rlexp.algos", "rlexp.run", "rlexp.cli"), "networks know nothing of algorithms or the run"),
    (("rlexp.envs",), ("rlexp.algos", "rlexp.networks", "rlexp.run", "rlexp.cli"), "environments know no learning"),
    (("rlexp.algos",), ("rlexp.run", "rlexp.cli", "hydra", "omegaconf"),
     "algorithms take plain keyword arguments, never the run or a config"),
    (("rlexp.run",), ("rlexp.cli",), "the run is below the entry points"),
]
ANALYSIS = "rlexp.analysis"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_imports(root: Path) -> dict[str, set[str]]:
    """{module: the modules it imports} for every .py file under the package ``root``.
    ``from pkg import name`` counts as importing ``pkg.name`` where that is a module."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package this module is in
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    imported.add(candidate if candidate in files else base)
        graph[name] = {m for m in imported if m != name}
    return graph


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for importers, forbidden, why in RULES:
        for module, imported in graph.items():
            if any(within(module, p) for p in importers):
                found += [f"{module} imports {m}: {why}" for m in sorted(imported) if any(within(m, f) for f in forbidden)]
    for module, imported in graph.items():
        if not within(module, ANALYSIS):
            found += [f"{module} imports {m}: the training path never reads the analysis tools"
                      for m in sorted(imported) if within(m, ANALYSIS)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), as sorted lists."""
    local = {m: {i for i in imported if i in graph} for m, imported in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(local[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(local):
        if module not in index:
            visit(module)
    return groups


def test_rlexp_has_no_import_cycles():
    assert cycles(read_imports(PACKAGE)) == []


def test_rlexp_imports_run_one_way():
    assert violations(read_imports(PACKAGE)) == []


def test_the_reader_sees_the_layout():
    """The graph the rules run on is the real one: known edges are in it."""
    graph = read_imports(PACKAGE)
    assert "rlexp.algos.ppo_fast_cpu" in graph["rlexp.algos.ppo"]  # `from rlexp.algos import ppo_fast_cpu`
    assert "rlexp.networks.heads" in graph["rlexp.networks.actor_critic"]
    assert "rlexp.run.trainer" in graph["rlexp.analysis.benchmark"]  # a lazy import, inside a function
    assert {"rlexp.envs", "rlexp.networks", "rlexp.algos", "rlexp.analysis", "rlexp.run", "rlexp.data", "rlexp.cli"} <= set(graph)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "rlexp" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "rlexp"


@pytest.mark.parametrize("files, expected", [
    ({"__init__.py": "", "a.py": "def f():\n    from rlexp import b\n", "b.py": "from rlexp.a import f\n"}, [["rlexp.a", "rlexp.b"]]),
    ({"__init__.py": "", "x/__init__.py": "", "x/p.py": "from . import q\n", "x/q.py": "from .r import z\n", "x/r.py": "import rlexp.x.p\n"},
     [["rlexp.x.p", "rlexp.x.q", "rlexp.x.r"]]),
    ({"__init__.py": "", "a.py": "import rlexp.b\n", "b.py": "import os\n"}, []),
])
def test_cycles_are_found(tmp_path, files, expected):
    assert cycles(read_imports(write_package(tmp_path, files))) == expected


def test_forbidden_directions_are_found(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "",
        "run/__init__.py": "", "run/trainer.py": "from rlexp.cli import train\n",
        "cli/__init__.py": "", "cli/train.py": "",
        "algos/__init__.py": "", "algos/ppo.py": "import hydra\nfrom rlexp.run.trainer import Trainer\n",
        "networks/__init__.py": "", "networks/heads.py": "def f():\n    from rlexp.algos import ppo\n",
        "envs/__init__.py": "from rlexp.networks import heads\n",
        "analysis/__init__.py": "", "analysis/results.py": "",
        "data/__init__.py": "", "data/rollout.py": "from rlexp.analysis.results import x\nfrom rlexp.networks import heads\n",
    })
    found = violations(read_imports(package))
    assert found == [
        "rlexp.data.rollout imports rlexp.networks.heads: rollout storage, returns and observations are the floor: they know nothing above them",
        "rlexp.networks.heads imports rlexp.algos.ppo: networks know nothing of algorithms or the run",
        "rlexp.envs imports rlexp.networks.heads: environments know no learning",
        "rlexp.algos.ppo imports hydra: algorithms take plain keyword arguments, never the run or a config",
        "rlexp.algos.ppo imports rlexp.run.trainer: algorithms take plain keyword arguments, never the run or a config",
        "rlexp.run.trainer imports rlexp.cli.train: the run is below the entry points",
        "rlexp.data.rollout imports rlexp.analysis.results: the training path never reads the analysis tools",
    ]


def test_the_top_floor_holds_at_most_eight_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top


def receiver(node: ast.expr) -> str:
    """The name a method is called on: ``env`` in ``env.step()``, ``eval_env`` in ``self.eval_env.step()``."""
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def env_calls(root: Path, attribute: str) -> dict[str, int]:
    """{module: number of ``<...env>.<attribute>(...)`` calls in it} over the package ``root``
    (an object whose name ends in env: env, self.env, eval_env, vec_env...)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        n = sum(1 for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attribute
                and receiver(node.func.value).lower().endswith("env"))
        if n:
            found[module_name(path, root)] = n
    return found


def attribute_reads(root: Path, names: set[str]) -> dict[str, int]:
    """{module: number of reads of an attribute, or of a ``getattr``/``hasattr`` string, in ``names``}."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        n = 0
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr in names:
                n += 1
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                  and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value in names):
                n += 1
        if n:
            found[module_name(path, root)] = n
    return found


def test_only_the_collector_steps_an_env_on_the_training_path():
    """Envs are stepped in rlexp.run.collector: training, evaluation and rlexp-eval's videos all go
    through its Stepper. envs/ steps the inner envs it wraps; analysis/ times SB3."""
    steppers = {m for m in env_calls(PACKAGE, "step") if not within(m, "rlexp.envs") and not within(m, ANALYSIS)}
    assert steppers == {"rlexp.run.collector"}, steppers


def test_recurrence_is_asked_only_where_it_lives():
    """Outside rlexp/networks and the sequence minibatching (rlexp/data/rollout.py) a policy's
    state is data passed along: nothing reads is_recurrent or a .recurrent attribute. The
    agent's ``stateful`` (read by rlexp-export too) decides the public return type only."""
    askers = {m for m in attribute_reads(PACKAGE, {"is_recurrent", "recurrent", "stateful"})
              if not within(m, "rlexp.networks") and not within(m, ANALYSIS)}  # analysis: SB3's recurrent case
    assert askers <= {"rlexp.data.rollout", "rlexp.agent", "rlexp.cli.export"}, askers
    readers = {m for m in attribute_reads(PACKAGE, {"is_recurrent", "recurrent"}) if not within(m, ANALYSIS)}
    assert readers <= {"rlexp.networks.actor_critic", "rlexp.networks.recurrent"}, readers


def test_the_fast_path_is_chosen_once():
    """Whether PPO's numpy backend runs is decided in the trainer, which hands it to the
    collector and keeps it for the analysis tools; only the algorithm it serves reads it."""
    readers = {m for m in attribute_reads(PACKAGE, {"fast", "backend"})
               if not within(m, ANALYSIS) and not within(m, "rlexp.envs")}  # envs: env.backend, the torch-native envs
    assert readers <= {"rlexp.run.trainer", "rlexp.algos.ppo", "rlexp.algos.base"}, readers
