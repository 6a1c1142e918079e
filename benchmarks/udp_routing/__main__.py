"""python -m benchmarks.udp_routing, or python benchmarks/udp_routing: see the package docstring."""

import os
import sys

if __package__ in (None, ""):  # run as a path: python benchmarks/udp_routing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from benchmarks.udp_routing.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
