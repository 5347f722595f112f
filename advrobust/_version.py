"""The single source of advrobust's version."""

__version__ = "0.1.0"
