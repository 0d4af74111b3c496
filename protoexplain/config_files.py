"""Finding a config file: a path on disk, or the name of a config shipped with the package.

The YAML files in the repository's ``configs/`` folder are installed as the package data
``protoexplain.configs`` (see ``pyproject.toml``), so ``protoexplain train synthetic_protopnet``
and ``protoexplain demo`` work the same from a source checkout and from an installed wheel,
in any working directory. A path that exists always wins over a shipped name.

Configs of other kinds ship in subfolders of ``configs/`` (``configs/studies/`` holds the
study designs of ``protoexplain study design``): ``folder="studies"`` finds those by name.
The subfolders keep them apart from the training configs, which are the YAML files at the
top of ``configs/``.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from protoexplain.config_schema import ConfigError

__all__ = ["ConfigFile", "find_config", "shipped_configs"]

SHIPPED_PACKAGE = "protoexplain.configs"


class ConfigFile:
    """A config's text and where it came from (``source``, used in error messages)."""

    def __init__(self, name: str, source: str, text: str) -> None:
        self.name = name      # the file's stem, e.g. "synthetic_protopnet"
        self.source = source  # a path, or "shipped config NAME.yaml"
        self.text = text


def shipped_configs(folder: str = "") -> dict[str, Traversable]:
    """The configs shipped with the package, by name (file stem), sorted: the training
    configs, or those of the subfolder ``folder`` of ``configs/`` (e.g. ``studies``)."""
    folder = resources.files(SHIPPED_PACKAGE).joinpath(folder) if folder \
        else resources.files(SHIPPED_PACKAGE)
    files = [entry for entry in folder.iterdir() if entry.name.endswith(".yaml")]
    return {entry.name.removesuffix(".yaml"): entry for entry in sorted(files, key=str)}


def find_config(path_or_name: str | Path, folder: str = "") -> ConfigFile:
    """Read the config at ``path_or_name``, or the shipped config of that name (in the
    subfolder ``folder`` of ``configs/``, when given).

    Raises :class:`ConfigError` naming the argument and listing the shipped names when it is
    neither an existing file nor a shipped config.
    """
    path = Path(path_or_name)
    if path.is_file():
        return ConfigFile(path.stem, str(path), _read_text(path))
    if path.exists():
        raise ConfigError(f"config file {path} is not a file")
    shipped = shipped_configs(folder)
    name = path.name.removesuffix(".yaml")
    home = Path("configs", folder)
    if name in shipped and (path.parent == Path(".") or path.parent.parts[-len(home.parts):]
                            == home.parts):
        where = f"{folder}/" if folder else ""
        return ConfigFile(name, f"shipped config {where}{name}.yaml", shipped[name].read_text())
    raise ConfigError(f"config file {path} does not exist, and '{name}' is not a shipped "
                      f"config (shipped: {', '.join(shipped)})")


def _read_text(path: Path) -> str:
    """The file's text (UTF-8); a file that is not text is a ConfigError naming it."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not a text file (byte {error.start} is not "
                          "UTF-8); a config is a YAML text file") from None
    if "\x00" in text:
        raise ConfigError(f"config file {path} is not a text file (it holds NUL bytes); a "
                          "config is a YAML text file")
    return text
