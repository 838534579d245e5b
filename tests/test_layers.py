"""The package's layers: the core, the training application, the evaluation kit and the commands,
each importing only the layers below it; no import cycles; fast, JAX-free command-line help."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# Lowest first: a module may import its own layer and the layers before it.
LAYERS = ("core", "training", "eval", "commands")


def layer(module: str) -> str:
    if module == "jaxgan.__main__":
        return "commands"
    for name in ("training", "eval"):
        if module == f"jaxgan.{name}" or module.startswith(f"jaxgan.{name}."):
            return name
    return "core"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "jaxgan").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The jaxgan modules a file imports (at module level only, if asked)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` imports nothing
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxgan"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("jaxgan"))
    return found & set(modules())


def test_every_import_points_down_the_layers():
    upward = []
    for name, path in modules().items():
        for target in imports(path, top_level_only=False):
            if LAYERS.index(layer(target)) > LAYERS.index(layer(name)):
                upward.append(f"{name} ({layer(name)}) imports {target} ({layer(target)})")
    assert not upward, upward


def test_module_level_imports_have_no_cycle():
    graph = {name: imports(path, top_level_only=True) - {name} for name, path in modules().items()}
    done, path = set(), []

    def visit(name):
        if name in path:
            raise AssertionError(" -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        path.pop()
        done.add(name)

    for name in graph:
        visit(name)


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_core_runs_without_the_layers_above_it():
    out = _python(
        "import sys, jax, jaxgan\n"
        "G, D = jaxgan.make_models('mlp')\n"
        "state = jaxgan.create_state(jax.random.key(0), G, D, jaxgan.adam(), jaxgan.adam())\n"
        "jaxgan.sample(G, state, jax.random.key(1), num=2)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('jaxgan.training', 'jaxgan.eval'))))"
    )
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "command",
    ["jaxgan.__main__:train", "jaxgan.__main__:sample", "jaxgan.__main__:evaluate",
     "jaxgan.__main__:export", "parity.__main__:main", "benchmarks.benchmark:main",
     "experiments.strategy_study.__main__:main"],
)  # fmt: skip
def test_help_needs_neither_jax_nor_torch(command):
    module, function = command.split(":")
    out = _python(
        f"import sys, contextlib, io\nfrom {module} import {function}\n"
        f"with contextlib.redirect_stdout(io.StringIO()) as help_text:\n"
        f"    try:\n        {function}(['--help'])\n    except SystemExit:\n        pass\n"
        f"print(len(help_text.getvalue()) > 200, sorted({{m.split('.')[0] for m in sys.modules}}"
        f" & {{'jax', 'torch', 'flax', 'tensorflow'}}))"
    )
    assert out.strip() == "True []"


@pytest.mark.parametrize("command", ["parity.__main__:main", "benchmarks.benchmark:main"])
def test_missing_data_is_reported_before_jax_or_torch_start(command, tmp_path):
    module, function = command.split(":")
    out = _python(
        f"import sys\nfrom {module} import {function}\n"
        f"status = {function}(['--data-dir', {str(tmp_path / 'none')!r}])\n"
        f"print(status, sorted({{m.split('.')[0] for m in sys.modules}}"
        f" & {{'jax', 'torch', 'flax', 'tensorflow'}}))"
    )
    assert out.strip() == "2 []"
