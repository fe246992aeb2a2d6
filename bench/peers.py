"""Entry point: ``python -m bench.peers [--json FILE]`` (``make bench-peers``): Countersign and Ratify side by
side; prints the comparison table.

The work is in bench/peer_bench.py, imported only when this module runs as the main program: the warm
scenario's load generator is a spawned process that re-imports this module, and must not pay for the
benchmark's imports.
"""

from __future__ import annotations

if __name__ == "__main__":
    from bench.peer_bench import main

    raise SystemExit(main())
