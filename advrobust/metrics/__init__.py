"""advrobust.metrics."""
