"""advrobust.study."""
