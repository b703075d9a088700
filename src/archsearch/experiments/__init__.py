"""Experiments built from studies: strategy comparisons and random-architecture samples."""

from archsearch.experiments._compare import Comparison, RunResult, compare, incumbent_curve
from archsearch.experiments._sample import Sample, density_peaks, sample, write_sample

__all__ = ["Comparison", "RunResult", "Sample", "compare", "density_peaks", "incumbent_curve", "sample", "write_sample"]
