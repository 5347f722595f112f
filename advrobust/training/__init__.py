"""advrobust.training."""
