"""Study presets shipped with the package (``advrobust/study/presets/*.toml``)."""

from __future__ import annotations

from importlib import resources

from ._config import StudyConfig

__all__ = ["list_presets", "load_preset", "preset_text"]


def _files() -> dict[str, str]:
    folder = resources.files("advrobust.study") / "presets"
    out: dict[str, str] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            out[entry.name[: -len(".toml")]] = entry.read_text(encoding="utf-8")
    return dict(sorted(out.items()))


def list_presets() -> list[str]:
    """Names of the shipped presets (``digits`` is the embedded default that needs no files)."""
    return list(_files())


def preset_text(name: str) -> str:
    """The TOML text of a preset (a starting point for your own config).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).
    """
    files = _files()
    if name not in files:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(files)}")
    return files[name]


def load_preset(name: str) -> StudyConfig:
    """The :class:`StudyConfig` of a shipped preset.

    Args:
        name: one of :func:`list_presets` (``digits``, ``digits-paper``, ``mnist-000``,
            ``cifar10-000``, ``kurakin-label-leak``, ``transfer-matrix``, ``capacity``).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).

    Example:
        >>> load_preset("digits").data.name
        'digits'
    """
    return StudyConfig.from_toml(preset_text(name))
