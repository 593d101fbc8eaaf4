"""Metrics over run items: a typed registry, each metric declaring whether higher is better."""

from evals.metrics.registry import METRICS, ItemMetric, applicable_metrics

__all__ = ["METRICS", "ItemMetric", "applicable_metrics"]
