"""python -m benchmarks.fuzz: see benchmarks/fuzz/__init__.py."""

import sys

from benchmarks.fuzz.runner import main

sys.exit(main())
