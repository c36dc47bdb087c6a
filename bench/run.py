"""Run every benchmark: ``make bench`` (``python -m bench.run``)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

# Each module has ``main()``; add new benchmarks here.
MODULES: Sequence[str] = ("bench.hook_requests",)


def main() -> None:
    for name in MODULES:
        importlib.import_module(name).main([])


if __name__ == "__main__":
    main()
