"""The command line of a test-vector generator: print the vectors, write them (-o) or check a
file against them (--check, exit 1 when it differs)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable


def main(name: str, generate: Callable[[], Any], description: str,
         argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-o", "--output", help="write the JSON to this file")
    parser.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs")
    args = parser.parse_args(argv)
    text = json.dumps(generate(), indent=2) + "\n"
    if args.check:
        with open(args.check) as f:
            same = f.read() == text
        print(f"{name} vectors match" if same else f"{args.check} differs from the generator")
        return 0 if same else 1
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
