"""advrobust.models."""
