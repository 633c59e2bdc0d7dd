"""The shape of the house: cheap imports, no import cycles, no import from a higher floor, a short
step file."""

from __future__ import annotations

import ast
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gsdi"
KERNELS = Path(__file__).resolve().parents[1] / "kernels"


def module_imports() -> dict[str, set[str]]:
    """Every gsdi module -> the gsdi modules it imports anywhere (top level or inside functions), read with ast."""
    files = {f"gsdi.{'.'.join(p.relative_to(PACKAGE).with_suffix('').parts)}".removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    files.update({f"gsdi.kernels.{p.stem}".removesuffix(".__init__"): p for p in KERNELS.glob("*.py")})
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)  # `from gsdi import run` names a module
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def test_no_import_cycles_among_the_package_modules():
    graph = module_imports()
    assert "gsdi.run" in graph and "gsdi.kernels.rasterize" in graph
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


# The floors of the house, lowest first (README, Layout): a module imports only from its own floor or
# below. A module is on the floor of the longest name here that it starts with.
FLOORS = [
    ("foundations", ["gsdi.errors", "gsdi.version", "gsdi.rng", "gsdi.progress", "gsdi.device", "gsdi.outputs",
                     "gsdi.presets", "gsdi.prompts", "gsdi.kernels"]),
    ("the world and the scene's terms", ["gsdi.config", "gsdi.cameras", "gsdi.checkpoint", "gsdi.formats", "gsdi.scene",
                                         "gsdi.world"]),
    ("rendering and the models", ["gsdi.render", "gsdi.media", "gsdi.densify", "gsdi.mesh", "gsdi.viewer", "gsdi.priors"]),
    ("guidance", ["gsdi.guidance"]),
    ("the step", ["gsdi.step"]),
    ("the run and the yardstick", ["gsdi.run", "gsdi.eval"]),
    ("batches", ["gsdi.batch"]),
    ("the front door", ["gsdi.cli", "gsdi"]),
]


def floor_of(module: str) -> int:
    matches = [(len(prefix), level) for level, (_, prefixes) in enumerate(FLOORS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is on no floor: add it to FLOORS"
    return max(matches)[1]


def test_no_module_imports_from_a_higher_floor():
    graph = module_imports()
    upward = [f"{a} ({FLOORS[floor_of(a)][0]}) -> {b} ({FLOORS[floor_of(b)][0]})"
              for a, targets in sorted(graph.items()) for b in sorted(targets) if floor_of(b) > floor_of(a)]
    assert not upward, "\n".join(upward)


def test_import_gsdi_and_help_load_no_heavy_library():
    code = ("import sys, gsdi, gsdi.cli; sys.argv = ['gsdi', '--help']\n"
            "try:\n    gsdi.cli.main()\nexcept SystemExit:\n    pass\n"
            "heavy = {'torch', 'diffusers', 'transformers', 'gsplat', 'open3d'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "generate" in proc.stdout, proc.stdout + proc.stderr


def test_a_checkout_root_on_the_path_does_not_shadow_pypi_kernels(tmp_path):
    """From a source checkout's root (`python -m pytest` puts it on sys.path) `import kernels` must find
    what it finds elsewhere, PyPI's package that transformers imports, not the repo's kernels/ folder;
    and gsdi.kernels must still be the rasterizer beside it."""
    root = KERNELS.parent
    stub = tmp_path / "kernels"
    stub.mkdir()
    (stub / "__init__.py").write_text("STUB = True\n")
    code = ("import kernels, gsdi.kernels\n"
            "print(kernels.__file__)\n"
            "assert kernels.STUB and callable(gsdi.kernels.rasterization)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # after the root, which `python -c` run there puts first
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == str(stub / "__init__.py"), proc.stdout + proc.stderr
    # With no other `kernels` on the path (site-packages left out here), an empty namespace package answers.
    code = ("import sys\n"
            "sys.path[:] = [p for p in sys.path if 'site-packages' not in p and 'dist-packages' not in p]\n"
            "import kernels\n"
            "print(getattr(kernels, '__file__', None), hasattr(kernels, 'rasterization'))\n"
            "from kernels import get_kernel\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "None False", proc.stdout + proc.stderr
    assert proc.returncode == 1 and "ImportError: cannot import name 'get_kernel'" in proc.stderr, proc.stderr
    # transformers' probe (it imports a package it finds no metadata for, without catching the error)
    # must run from the root whether or not PyPI's kernels is installed, and find that one if it is.
    installed = importlib.machinery.PathFinder.find_spec("kernels", [p for p in sys.path if Path(p or ".").resolve() != root])
    code = ("import kernels\n"
            "from transformers.utils.import_utils import is_kernels_available\n"
            "is_kernels_available()\n"
            "print(getattr(kernels, '__file__', None))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (str(installed.origin) if installed else "None"), proc.stdout


def test_the_step_reads_in_about_a_page():
    lines = (PACKAGE / "step.py").read_text().splitlines()
    assert len(lines) <= 210, len(lines)
    assert "def advance" in "\n".join(lines) and "def state_dict" in "\n".join(lines)
