"""Entry point: ``python -m bench.run [--json FILE]`` (``make bench``); prints the benchmark table.

The work is in bench/scenarios.py, imported only when this module runs as the main program: the load
generator is a spawned process that re-imports this module, and must not pay for the server's imports.
"""

from __future__ import annotations

if __name__ == "__main__":
    from bench.scenarios import main

    raise SystemExit(main())
