"""advrobust.attacks."""
