"""Datasets, nested class-balanced subsets, batched augmentation and a tensor loader.

``load_dataset`` reads digits (embedded, no download), MNIST, CIFAR-10, STL-10 and Tiny
ImageNet into memory; ``nested_balanced_subsets`` builds the subsets ``S_1 ⊂ ... ⊂ S_n`` of
the ICLR 2019 study; ``TensorLoader`` and the ``Random*`` transforms keep the input pipeline on the
data's device.
"""

from ._augment import Compose as Compose
from ._augment import RandomFlip as RandomFlip
from ._augment import RandomRotation as RandomRotation
from ._augment import RandomShift as RandomShift
from ._dataset import ImageDataset as ImageDataset
from ._datasets import CorruptDatasetError as CorruptDatasetError
from ._datasets import DatasetNotFoundError as DatasetNotFoundError
from ._datasets import default_root as default_root
from ._datasets import list_datasets as list_datasets
from ._datasets import load_dataset as load_dataset
from ._loader import TensorLoader as TensorLoader
from ._subsets import nested_balanced_subsets as nested_balanced_subsets
from ._subsets import train_test_split_balanced as train_test_split_balanced

__all__ = [
    "Compose",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "ImageDataset",
    "RandomFlip",
    "RandomRotation",
    "RandomShift",
    "TensorLoader",
    "default_root",
    "list_datasets",
    "load_dataset",
    "nested_balanced_subsets",
    "train_test_split_balanced",
]
