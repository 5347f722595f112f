"""advrobust: adversarial robustness research in PyTorch.

The library is layered (``models`` and ``data`` < ``attacks`` < ``metrics`` < ``training`` <
``study``); import what you need from the subpackages, for example
``from advrobust.attacks import PGD``.

References (the short forms that docstrings use; the documentation's references page lists
them all):

- "the ICLR 2019 study": anonymous authors, "How training data affect the accuracy and
  robustness of neural networks for image classification", ICLR 2019 submission (OpenReview).
- "Su et al. 2018": Su, Zhang, Chen, Yi, Chen and Gao, "Is Robustness the Cost of Accuracy? A
  Comprehensive Study on the Robustness of 18 Deep Image Classification Models", ECCV 2018.
- "Kurakin et al. 2017": Kurakin, Goodfellow and Bengio, "Adversarial Machine Learning at
  Scale", ICLR 2017.
- "Madry et al. 2018": Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models
  Resistant to Adversarial Attacks", ICLR 2018.
- "Marchetti & Ho 2022": Marchetti and Ho, "Improving deep learning model robustness against
  adversarial attack by increasing the network capacity", 2022 (arXiv preprint).
- Grubišić, "Interplay of adversarial robustness and generalization in deep convolutional
  models", seminar slides (University of Zagreb, Faculty of Electrical Engineering and
  Computing).
"""

from ._version import __version__ as __version__

__all__ = ["__version__"]
