"""Save a running simulation to a file and go on from it later, with the same results.

A study at 10^4 peers over 24 simulated hours needs more CPU than a working session (or a
laptop's battery) gives. Between two `env.run` steps nothing is half-processed, so the whole
study object (world, SimPy queue, nodes, churn, workload) can be pickled and continued in another
process; the continued run's rows equal an uninterrupted run's (tests/experiments/
test_checkpoint.py). Pickle as it comes does not take this graph, so:
- cloudpickle (Dask's) carries the lambdas and closures the event queue holds;
- module-level objects (SimPy's PENDING, sim/lazy.py's DORMANT, default settings, ...) go by
  reference: the code compares some of them by identity;
- cryptography's key objects go as DER (PKCS#8, SubjectPublicKeyInfo);
- the churn process's generator goes as `Churn._loop(resumed=True)`: a generator cannot be
  pickled, and the loop keeps its whole state in the Churn object;
- objects named in `skip` (a progress callback writing to a terminal) go as None.
Module functions go by reference and closures by value, so a run resumed under other code
would mix two versions without a word: the file names the code that wrote it (a digest of the
package's sources) and `load` refuses other code. The file: a magic line, a JSON header line,
the pickle, and a SHA-256 of everything before it (a damaged file is refused, never half-read).
A checkpoint is a pickle: load only files you wrote (loading runs code).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Iterable

import cloudpickle

# a node's objects nest ~140 deep at most (measured at 80-300 peers); well above, and well below
# where the C pickler overflows the 8 MB stack (~20,000: a segfault, not a RecursionError)
_RECURSION_LIMIT = 10_000
MAGIC = b"kadtalk checkpoint 1\n"
_PACKAGES = ("kadtalk", "kadtalk.node", "kadtalk.sim", "kadtalk.experiments", "kadtalk.transport")


def code_digest() -> str:
    """SHA-256 over the node, simulator and experiment sources (paths and contents)."""
    digest = hashlib.sha256()
    for name in _PACKAGES:
        __import__(name)
        for root in sys.modules[name].__path__:
            base = Path(root)
            for path in sorted(base.rglob("*.py")):
                digest.update(f"{name}/{path.relative_to(base)}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


class CheckpointError(Exception):
    """The state holds something this module cannot save (named in the message)."""


def _module_objects() -> dict[int, tuple[str, str]]:
    """id -> (module, name) of the objects kadtalk's and SimPy's modules hold at top level."""
    plain = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, int, float,
             str, bytes, bool, tuple, frozenset, type(None))
    found: dict[int, tuple[str, str]] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("kadtalk", "simpy")):
            continue
        for attr, value in list(vars(module).items()):
            if not isinstance(value, plain):
                found.setdefault(id(value), (name, attr))
    return found


def _module_object(module: str, attr: str) -> Any:
    __import__(module)
    return getattr(sys.modules[module], attr)


def _private_key(der: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_private_key
    return load_der_private_key(der, None)


def _public_key(der: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_public_key
    return load_der_public_key(der)


def _generator(gen: types.GeneratorType) -> tuple:
    from kadtalk.sim.churn import Churn
    inner = gen.gi_yieldfrom
    if gen.gi_code is Churn._run.__code__ and inner is not None and \
            inner.gi_code is Churn._loop.__code__:
        return Churn._loop, (gen.gi_frame.f_locals["self"], True)
    if gen.gi_code is Churn._loop.__code__:  # a resumed run's churn
        return Churn._loop, (gen.gi_frame.f_locals["self"], True)
    raise CheckpointError(f"cannot save a running generator: {gen.gi_code.co_qualname} "
                          "(only the churn loop, once churn has started)")


def _key(obj: Any) -> tuple:
    from cryptography.hazmat.primitives import serialization as s
    if hasattr(obj, "private_bytes"):
        return _private_key, (obj.private_bytes(s.Encoding.DER, s.PrivateFormat.PKCS8,
                                                s.NoEncryption()),)
    if hasattr(obj, "public_bytes"):
        return _public_key, (obj.public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo),)
    raise CheckpointError(f"cannot save a {type(obj).__module__}.{type(obj).__qualname__}")


class _Pickler(cloudpickle.Pickler):
    def __init__(self, file: Any, skip: Iterable[Any]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._by_reference = _module_objects()
        self._skip = {id(obj) for obj in skip if obj is not None}

    def reducer_override(self, obj: Any) -> Any:
        ref = self._by_reference.get(id(obj))
        if ref is not None:
            return _module_object, ref
        if id(obj) in self._skip:
            return type(None), ()
        if type(obj) is types.GeneratorType:
            return _generator(obj)
        if type(obj).__module__.startswith("cryptography"):
            return _key(obj)
        return super().reducer_override(obj)


class _Hashing(io.RawIOBase):
    """A write-only file that hashes what passes through it."""

    def __init__(self, file: Any):
        self.file, self.sha = file, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.sha.update(data)
        return self.file.write(data)


def save(state: Any, path: Path | str, skip: Iterable[Any] = ()) -> int:
    """Write `state` to `path` (whole or not at all: a temporary file, then a rename); returns
    the size in bytes."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_RECURSION_LIMIT)
    try:
        with open(tmp, "wb") as f:
            out = _Hashing(f)
            out.write(MAGIC)
            out.write(json.dumps({"code": code_digest()}).encode() + b"\n")
            _Pickler(out, skip).dump(state)
            f.write(out.sha.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, (pickle.PicklingError, TypeError, AttributeError, RecursionError)):
            raise CheckpointError(f"cannot checkpoint to {path}: {error}") from error
        raise
    finally:
        sys.setrecursionlimit(limit)
    return path.stat().st_size


def load(path: Path | str) -> Any:
    """What `save` wrote, if this code wrote it (only load files you wrote: unpickling runs
    code)."""
    data = Path(path).read_bytes()
    body, digest = data[:-32], data[-32:]
    if not data.startswith(MAGIC) or hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{path} is not a whole checkpoint (damaged, cut short, or "
                              "another kind of file)")
    header_end = body.index(b"\n", len(MAGIC)) + 1
    header = json.loads(body[len(MAGIC):header_end])
    here = code_digest()
    if header.get("code") != here:
        raise CheckpointError(f"{path} was written by other code than this (its sources' digest "
                              f"{str(header.get('code'))[:12]}, these {here[:12]}): resume "
                              "it with the commit that wrote it")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_RECURSION_LIMIT)
    try:
        return pickle.loads(memoryview(body)[header_end:])
    except Exception as error:  # a whole file this code wrote: anything here is a bug, say so
        raise CheckpointError(f"{path} could not be read back: {error!r}") from error
    finally:
        sys.setrecursionlimit(limit)
