"""advrobust: adversarial robustness research in PyTorch.

The library is layered (``models`` and ``data`` < ``attacks`` < ``metrics`` < ``training`` <
``study``); import what you need from the subpackages, for example
``from advrobust.attacks import PGD``.
"""

from ._version import __version__ as __version__

__all__ = ["__version__"]
