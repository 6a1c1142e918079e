"""benchmarks/compiled.py: its module list names real modules, and its copies are what the
children import (an extension module placed in a copy is loaded from there, ahead of the
editable install and of the .py beside it). The compilers themselves are not run here: a build
takes minutes (docs/simulation.md, "A compiled build of the node code")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.compiled import (HOT, ROOT, child_env, copy_tree, module_file, package_dirs,
                                 write_site)


def test_every_hot_module_is_a_file_of_the_repository():
    dirs = package_dirs()
    for module in HOT:
        assert (ROOT / module_file(module, dirs)).is_file(), module
    assert module_file("kadtalk.node.routing.table", dirs) == "node/routing/table.py"
    with pytest.raises(ValueError):
        module_file("elsewhere.module", dirs)


def test_children_import_the_copy_and_its_extension_modules(tmp_path: Path):
    dirs = package_dirs()
    tree = tmp_path / "tree"
    copy_tree(tree, dirs)
    write_site(tmp_path / "site", tree, dirs)
    assert not list(tree.rglob("*.so"))  # build output never rides along into a copy
    # A stand-in module built both ways (any extension file will do: only where the import
    # system finds it is checked, not that it loads): the .so is found ahead of the .py.
    built = Path(__import__("_json").__file__)
    if built.suffix != ".so":
        pytest.skip("this interpreter has _json built in")
    suffix = built.name[len("_json"):]
    (tree / "node" / "routing" / "standin.py").write_text("")
    (tree / "node" / "routing" / f"standin{suffix}").write_bytes(built.read_bytes())
    code = ("import json, importlib.util as u, kadtalk.node.routing.lookup as m\n"
            "print(json.dumps([m.__file__, u.find_spec('kadtalk.node.routing.standin').origin]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=child_env(tmp_path / "site"),
                          capture_output=True, text=True, check=True)
    pure, extension = json.loads(done.stdout)
    assert pure == str(tree / "node" / "routing" / "lookup.py")
    assert extension == str(tree / "node" / "routing" / f"standin{suffix}")
