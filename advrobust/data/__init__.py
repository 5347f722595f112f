"""advrobust.data."""
