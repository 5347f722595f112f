"""Option types of the ``advrobust`` command line.

Each is an argparse ``type``: it turns the option's text into its value or raises
:class:`argparse.ArgumentTypeError`, which the parser reports as one usage-error line (status 2)
that names the option.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from advrobust._device import check_device, device_available

__all__ = [
    "attack_option",
    "dataset_contract",
    "dataset_name",
    "device_option",
    "fraction",
    "int_at_least",
    "jobs_option",
    "positive_float",
    "shard_option",
]


def int_at_least(minimum: int) -> Any:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def jobs_option(text: str) -> int | str:
    """An argparse type: an integer >= 1 or ``auto``."""
    if text == "auto":
        return text
    try:
        return int_at_least(1)(text)  # type: ignore[no-any-return]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or auto, got {text!r}") from None


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text!r}")
    return value


def device_option(text: str) -> str:
    """An argparse type for ``--device``: ``auto`` or a real device this machine has.

    ``meta`` is refused: meta tensors hold no data, so there is nothing to train or measure.
    """
    if text == "auto":
        return text
    try:
        dev = check_device(text, "device")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid device {text!r}; valid forms: {_CLI_DEVICES}"
        ) from None
    if dev.type == "meta":
        raise argparse.ArgumentTypeError(
            f"meta tensors hold no data, so there is nothing to train or evaluate; valid "
            f"forms: {_CLI_DEVICES}"
        )
    reason = device_available(dev)
    if reason is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {reason}; use --device cpu (or auto)")
    return text


_CLI_DEVICES = "auto, cpu, cuda, cuda:N, mps"


def shard_option(text: str) -> str:
    """An argparse type for ``--shard i/n`` (checked here, passed on as given)."""
    from ._grid import parse_shard

    try:
        parse_shard(text)
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--shard ")) from None
    return text


def attack_option(text: str) -> str:
    """An argparse type: a registered attack name (any case) -> its registry name."""
    from advrobust.attacks import attack_info, list_attacks

    try:
        return attack_info(text).name
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown attack {text!r}; valid attacks: {', '.join(list_attacks())}"
        ) from None


def dataset_contract(text: str) -> str:
    """An argparse type: a dataset name of ``INPUT_SETTINGS`` (its classes, channels, size)."""
    from advrobust.models import INPUT_SETTINGS

    if text not in INPUT_SETTINGS:
        raise argparse.ArgumentTypeError(
            f"unknown dataset contract {text!r}; valid: {', '.join(INPUT_SETTINGS)}"
        )
    return text


def dataset_name(text: str) -> str:
    """An argparse type: a dataset :func:`advrobust.data.list_datasets` knows."""
    from advrobust.data import list_datasets

    if text not in list_datasets():
        raise argparse.ArgumentTypeError(
            f"unknown dataset {text!r}; valid: {', '.join(list_datasets())}"
        )
    return text
