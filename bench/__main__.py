"""`python -m bench`: the same as `invoke bench`, for use without Invoke."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from bench.options import VARIANTS, BenchError
from bench.runner import default_out_dir, run_bench
from infra.topology import REPO_ROOT, load_stack
from infra.yaml_source import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--stack", default="lab", help="stack name or path to a stack file")
    parser.add_argument("--quick", action="store_true",
                        help="N = 1, 20, 200 at 3 s per point (the report's pattern at 1 "
                             "and 20), no read mix")
    parser.add_argument("--ns", help="comma-separated user counts, e.g. 1,5,20")
    parser.add_argument("--duration", type=float, help="seconds per point")
    parser.add_argument("--patterns", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--max-requests", type=int, help="upper bound per point")
    parser.add_argument("--no-bounds", action="store_true", help="skip pgbench and wrk")
    parser.add_argument("--out", help="output directory (default reports/bench-<timestamp>)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        topology = load_stack(args.stack)
        result = run_bench(
            topology, quick=args.quick, ns=args.ns, duration_s=args.duration,
            out_dir=Path(args.out) if args.out else default_out_dir(REPO_ROOT / "reports"),
            console=console, variants=args.patterns.split(",") if args.patterns else None,
            max_requests=args.max_requests, bounds=not args.no_bounds)
    except (BenchError, ConfigError) as exc:
        console.print(f"[red]bench: {exc}[/]")
        return 2
    return 0 if result.stack_integrity_ok else 1


if __name__ == "__main__":
    sys.exit(main())
