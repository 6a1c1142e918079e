"""Inside the emulated root: prove the interpreter and the native libraries kadtalk loads are
the target architecture's builds, by using each of them once and then reading the ELF header of
every shared object mapped into this process (/proc/self/maps, which qemu-user shows as the
guest sees it).

Usage: python kadtalk_arm64_probe.py MACHINE   (MACHINE as platform.machine() reports it,
e.g. aarch64). Prints one `so <name> <path> <ELF machine>` line per library and exits 1 when the
interpreter or any library is not MACHINE's build, or a library was not loaded.
"""

from __future__ import annotations

import platform
import struct
import sys

# ELF e_machine values (elf.h) by platform.machine() name.
ELF_MACHINES = {"aarch64": 183, "armv7l": 40, "x86_64": 62}
ELF_NAMES = {183: "AArch64", 40: "ARM", 62: "x86-64"}

# What must be loaded: a name for the report and a substring of its mapped file's path.
LIBRARIES = {
    "libopus": "libopus.so",
    "libasound": "libasound.so",
    "pyalsaaudio": "alsaaudio",
    "cryptography": "cryptography/hazmat/bindings/_rust",
    "numpy": "_multiarray_umath",  # numpy/_core/ (2.x, PyPI) or numpy/core/ (Debian 12's 1.24)
}


def elf_machine(path: str) -> int:
    with open(path, "rb") as f:
        header = f.read(20)
    if header[:4] != b"\x7fELF":
        raise ValueError(f"{path} is not an ELF file")
    order = "<" if header[5] == 1 else ">"
    return struct.unpack(order + "H", header[18:20])[0]


def use_the_libraries() -> None:
    """Load every native library through the code paths kadtalk uses, and run each once."""
    import alsaaudio
    import numpy as np
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from kadtalk.node.identity import Identity
    from kadtalk.node.media.codec import FRAME_BYTES, OpusDecoder, OpusEncoder

    ours, theirs = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    secret = ours.exchange(ec.ECDH(), theirs.public_key())
    assert secret == theirs.exchange(ec.ECDH(), ours.public_key())
    box = AESGCM(secret)
    assert box.decrypt(b"\0" * 12, box.encrypt(b"\0" * 12, b"kadtalk", None), None) == b"kadtalk"
    Identity.generate()

    tone = (8000 * np.sin(np.arange(FRAME_BYTES // 2) * 0.06)).astype("<i2").tobytes()
    encoder, decoder = OpusEncoder(), OpusDecoder()
    assert len(decoder.decode(encoder.encode(tone))) == FRAME_BYTES

    pcm = alsaaudio.PCM(alsaaudio.PCM_PLAYBACK, device="null")
    pcm.close()


def versions() -> str:
    import ctypes
    from importlib.metadata import version

    from cryptography.hazmat.backends.openssl import backend
    from opuslib.api.info import get_version_string

    asound = ctypes.CDLL("libasound.so.2")
    asound.snd_asoundlib_version.restype = ctypes.c_char_p
    opus = get_version_string()
    opus = opus.decode() if isinstance(opus, bytes) else opus
    return (f"cryptography {version('cryptography')} ({backend.openssl_version_text()}), "
            f"{opus}, alsa-lib {asound.snd_asoundlib_version().decode()}, "
            f"pyalsaaudio {version('pyalsaaudio')}, numpy {version('numpy')}")


def mapped_files() -> list[str]:
    with open("/proc/self/maps") as f:
        paths = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
    return sorted(p for p in paths if p.startswith("/") and ".so" in p)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ELF_MACHINES:
        print(__doc__, file=sys.stderr)
        return 2
    want_machine = argv[1]
    want_elf = ELF_MACHINES[want_machine]
    ok = True
    machine = platform.machine()
    print(f"python {platform.python_version()} platform.machine() = {machine}")
    ok &= machine == want_machine
    print(f"interpreter {sys.executable} -> ELF {ELF_NAMES.get(elf_machine(sys.executable), '?')}")
    ok &= elf_machine(sys.executable) == want_elf

    use_the_libraries()
    files = mapped_files()
    for name, needle in LIBRARIES.items():
        found = [p for p in files if needle in p]
        if not found:
            print(f"so {name} NOT LOADED")
            ok = False
        for path in found:
            code = elf_machine(path)
            print(f"so {name} {path} {ELF_NAMES.get(code, code)}")
            ok &= code == want_elf
    print("versions: " + versions())
    print("probe: " + ("all native code is " if ok else "NOT all native code is ") + want_machine)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
