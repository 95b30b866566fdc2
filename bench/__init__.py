"""`invoke bench`: the deployed stack against the chaos report's SQLite configuration.

    from bench import run_bench
    result = run_bench(load_stack("lab"), quick=True, out_dir=Path("reports/bench-..."))

Also runnable as `python -m bench --stack lab --quick`. The report (Markdown, JSON,
SVG) says what was measured and how; runner.run_bench documents the arguments.
"""

from bench.options import BenchError, make_options, parse_ns
from bench.results import BenchResult, PointResult
from bench.runner import default_out_dir, run_bench

__all__ = ["BenchError", "BenchResult", "PointResult", "default_out_dir", "make_options",
           "parse_ns", "run_bench"]
