"""What compiling the node code (mypyc or Cython) would buy the simulator, per datagram.

The same source, compiled: the hot modules of a join phase (node/routing, the flood guard, the
Node stack, the simulator's driver, network, registry and event loop) are built as extension
modules into a throwaway copy of the tree (never next to the sources in the work tree), then
`python -m benchmarks.sim_scale --join N` runs alternately on the pure copy and the compiled
copy, each in a fresh child process, and the CPU ratio is printed with the datagram counts
(equal counts: the compiled build simulated the same thing). `--pins` also runs the pinned
simulated results (tests/experiments/test_lookup_pin.py, test_call_pin.py) on the compiled
copy. The finding and the figures are in docs/simulation.md ("A compiled build").

    python -m benchmarks.compiled --compiler cython --join 1000 --repeat 2
    python -m benchmarks.compiled --compiler mypyc --join 1000 --pins \
        --patch benchmarks/compiled-mypyc.patch

mypyc compiles with mypy's errors ignored (the tree is not mypy-clean), but each annotation
becomes a run-time check, so an annotation the code does not keep fails the run with a
TypeError; it also refuses some constructs outright (the build's errors are printed).
benchmarks/compiled-mypyc.patch holds the behaviour-free changes that made the tree of
2026-12-06 build and pass the pins (it may need refreshing as the code moves). Cython runs
with `annotation_typing=False`, so annotations change nothing; sim/registry.py stays pure under
it (a `staticmethod` over `lru_cache` is called with two arguments there). Needs gcc and
Python's headers (setup.sh installs build-essential and python3-dev) and `pip install mypy` or
`pip install cython`.
Children find the copy through a `sitecustomize` on PYTHONPATH that maps the `kadtalk` packages
(pyproject.toml's package-dir) to it ahead of the editable install.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from benchmarks.common import add_common_options, emit_json, environment, resolve_repeat

ROOT = Path(__file__).resolve().parent.parent

# The join phase's hot modules (the profile in docs/simulation.md). node/layer.py stays pure:
# mypyc cannot compile its runtime-checkable Protocols, and routing/events.py derives from it.
HOT = (
    "kadtalk.node.routing.messages", "kadtalk.node.routing.route6", "kadtalk.node.routing.contacts",
    "kadtalk.node.routing.table", "kadtalk.node.routing.rtt", "kadtalk.node.routing.lookup",
    "kadtalk.node.routing.layer", "kadtalk.node.ratelimit", "kadtalk.node.stack",
    "kadtalk.transport.sim", "kadtalk.sim.registry", "kadtalk.sim.environment",
    "kadtalk.sim.latency", "kadtalk.sim.network",
)

CYTHON_PURE = ("kadtalk.sim.registry",)

SITECUSTOMIZE = '''\
"""Maps the kadtalk packages to {tree!r} (benchmarks/compiled.py), ahead of the editable install."""
import importlib.util
import sys

_MAPPING = {mapping!r}


class _TreeFinder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        directory = _MAPPING.get(fullname)
        if directory is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, directory + "/__init__.py", submodule_search_locations=[directory])


sys.meta_path.insert(0, _TreeFinder)
'''


def package_dirs() -> dict[str, str]:
    """pyproject.toml's package-dir: package name -> folder relative to the repository."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]["package-dir"]


def module_file(module: str, dirs: dict[str, str]) -> str:
    """The repository path of a module, e.g. kadtalk.node.routing.table -> node/routing/table.py."""
    parts = module.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        package = ".".join(parts[:cut])
        if package in dirs:
            return "/".join([dirs[package], *parts[cut:]]) + ".py"
    raise ValueError(f"{module} is in no package of pyproject.toml")


def copy_tree(dest: Path, dirs: dict[str, str], commit: str | None = None) -> None:
    """The sources a simulation imports (and the benchmarks and tests), without build output:
    as committed at `commit` (git archive), or as they are in the work tree."""
    folders = sorted({d.split("/")[0] for d in dirs.values()} | {"benchmarks", "tests"})
    dest.mkdir(parents=True)
    if commit is not None:
        archive = subprocess.run(["git", "archive", commit, "pyproject.toml", *folders],
                                 cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    ignore = shutil.ignore_patterns("*.so", "__pycache__", "*.pyc")
    for folder in folders:
        shutil.copytree(ROOT / folder, dest / folder, ignore=ignore, symlinks=True)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def write_site(site: Path, tree: Path, dirs: dict[str, str]) -> None:
    site.mkdir(parents=True, exist_ok=True)
    mapping = {package: str(tree / folder) for package, folder in dirs.items()}
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(tree=str(tree), mapping=mapping))


def shadow(tree: Path, src: Path, dirs: dict[str, str]) -> None:
    """A `kadtalk/...` layout of symlinks into `tree`, so the compilers name modules fully."""
    for package, folder in dirs.items():
        target = src.joinpath(*package.split("."))
        if package == "kadtalk":
            target.mkdir(parents=True, exist_ok=True)
            for file in (tree / folder).glob("*.py"):
                (target / file.name).symlink_to(file)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(tree / folder, target_is_directory=True)


def build(compiler: str, modules: tuple[str, ...], tree: Path, work: Path,
          dirs: dict[str, str]) -> float:
    """Compile `modules` of `tree` in a child process and put the .so files into `tree`."""
    src = work / "src"
    shadow(tree, src, dirs)
    files = [module.replace(".", "/") + ".py" for module in modules]
    if compiler == "mypyc":
        (work / "mypy.ini").write_text(
            "[mypy]\nignore_missing_imports = True\nfollow_imports = silent\n"
            "[mypy-kadtalk.*]\nignore_errors = True\n")
        make = ("from mypyc.build import mypycify\n"
                f"exts = mypycify(['--config-file', {str(work / 'mypy.ini')!r}, *{files!r}], "
                f"group_name='kadtalk._native', target_dir={str(work / 'c')!r})\n")
    else:
        make = ("from Cython.Build import cythonize\n"
                f"exts = cythonize({files!r}, build_dir={str(work / 'c')!r}, quiet=True, "
                "compiler_directives={'language_level': 3, 'annotation_typing': False})\n")
    script = make + ("from setuptools import setup\n"
                     "setup(name='kadtalk-compiled', ext_modules=exts, script_args=['build_ext', "
                     f"'--build-lib', {str(work / 'lib')!r}, "
                     f"'--build-temp', {str(work / 'o')!r}])\n")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], cwd=src, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line]
        raise SystemExit(f"{compiler} build failed:\n" + "\n".join(errors[:40] or
                                                                   [done.stderr[-3000:]]))
    for built in (work / "lib").rglob("*.so"):
        relative = built.relative_to(work / "lib")
        package = ".".join(relative.parent.parts)
        shutil.copy2(built, tree / dirs[package] / relative.name)
    return time.perf_counter() - started


def child_env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def join_run(tree: Path, site: Path, nodes: int, seed: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.sim_scale", "--join", str(nodes),
               "--seed", str(seed)]
    done = subprocess.run(command, cwd=tree, env=child_env(site), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the join run in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_imports(tree: Path, site: Path, modules: tuple[str, ...]) -> list[str]:
    """The modules that load from an extension in `tree` (all of them, or the build is wrong)."""
    code = ("import importlib, json, sys\n"
            f"print(json.dumps([m for m in {list(modules)!r} "
            "if importlib.import_module(m).__file__.endswith('.so')]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=child_env(site),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def run_pins(tree: Path, site: Path) -> int:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/experiments/test_lookup_pin.py", "tests/experiments/test_call_pin.py"]
    return subprocess.run(command, cwd=tree, env=child_env(site)).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compiled", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compiler", choices=("mypyc", "cython"), default="mypyc")
    parser.add_argument("--join", type=int, default=1000, metavar="N",
                        help="nodes joining by the protocol per run (default 1,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modules", nargs="+", metavar="MODULE",
                        help="modules to compile (default: the join phase's hot modules)")
    parser.add_argument("--pins", action="store_true",
                        help="also run the pinned lookup and call studies on the compiled copy")
    parser.add_argument("--patch", metavar="FILE",
                        help="a patch applied to both copies first (git apply), e.g. the "
                        "behaviour-free changes mypyc needs: benchmarks/compiled-mypyc.patch")
    parser.add_argument("--commit", metavar="REV",
                        help="measure this commit (git archive) instead of the work tree as it is")
    parser.add_argument("--keep", action="store_true", help="keep the copies (printed)")
    add_common_options(parser, default_repeat=2)
    args = parser.parse_args(argv)
    repeat = resolve_repeat(args, quick_repeat=1)
    nodes = 100 if args.quick else args.join
    dirs = package_dirs()
    modules = tuple(args.modules or (m for m in HOT if args.compiler == "mypyc"
                                     or m not in CYTHON_PURE))
    import importlib.util
    if importlib.util.find_spec("mypyc" if args.compiler == "mypyc" else "Cython") is None:
        raise SystemExit(f"{args.compiler} is not installed (the project does not need it): "
                         f"pip install {'mypy' if args.compiler == 'mypyc' else 'cython'}")
    for module in modules:
        module_file(module, dirs)  # a typo fails here, not after the build
    work = Path(tempfile.mkdtemp(prefix="kadtalk-compiled-"))
    try:
        pure, compiled = work / "pure", work / "compiled"
        for tree in (pure, compiled):
            copy_tree(tree, dirs, args.commit)
            if args.patch:
                subprocess.run(["git", "apply", str(Path(args.patch).resolve())], cwd=tree,
                               check=True)
            write_site(work / f"site-{tree.name}", tree, dirs)
        build_s = build(args.compiler, modules, compiled, work / "build", dirs)
        loaded = check_imports(compiled, work / "site-compiled", modules)
        print(f"{args.compiler}: {len(loaded)} of {len(modules)} modules compiled "
              f"in {build_s:.0f} s", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {"pure": [], "compiled": []}
        for _ in range(repeat):  # alternately, so both see the same load
            for name, tree in (("pure", pure), ("compiled", compiled)):
                load = os.getloadavg()[0]
                result = join_run(tree, work / f"site-{name}", nodes, args.seed)
                result["load"] = round(load, 1)
                runs[name].append(result)
                print(name, json.dumps(result), flush=True)
        cpu = {name: sorted(r["cpu_s"] for r in rs)[len(rs) // 2] for name, rs in runs.items()}
        same = {r["datagrams"] for rs in runs.values() for r in rs}
        ratio = cpu["pure"] / cpu["compiled"]
        print(f"join of {nodes:,} nodes: pure {cpu['pure']:.2f} s CPU, {args.compiler} "
              f"{cpu['compiled']:.2f} s: {ratio:.2f}x; datagrams "
              f"{'equal' if len(same) == 1 else 'DIFFER: ' + str(sorted(same))}")
        pins = run_pins(compiled, work / "site-compiled") if args.pins else None
        if pins is not None:
            print(f"pinned studies on the compiled copy: {'passed' if pins == 0 else 'FAILED'}")
        emit_json(args.json, {
            "benchmark": "compiled", "compiler": args.compiler, "nodes": nodes,
            "modules": list(modules), "compiled": loaded, "patch": args.patch,
            "commit": args.commit, "build_s": round(build_s, 1),
            "runs": runs, "cpu_s": cpu, "ratio": round(ratio, 3),
            "datagrams_equal": len(same) == 1, "pins_passed": None if pins is None else pins == 0,
            "environment": environment(),
        })
        return 0 if len(same) == 1 and pins in (None, 0) else 1
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
