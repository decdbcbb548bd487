"""feedstock.benchtool: the engine of ``feedstock bench`` (stage rates, worker sweep, memory, verdict)."""
from .engine import Subject, run_bench
from .report import BenchResult, plot, table
from .verdict import Verdict, judge

__all__ = ["Subject", "run_bench", "BenchResult", "table", "plot", "Verdict", "judge"]
