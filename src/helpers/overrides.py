"""--set key=value (on the commands) as typed values: text keys take the text as written, numbers any
float notation, lists and mappings YAML; validated with the profile like a value in the file."""

from __future__ import annotations

import typing

import yaml

from helpers.config import Config, ConfigError


def parse_overrides(items: list[str] | None) -> dict:
    """`key=value` strings (from --set) as a mapping, each value read by its key's type: text keys
    take the text as written (`dataset=/data/x`, `caption_template=Caption: {}`), numbers accept
    any float notation (`learning_rate=3e-5`), lists and mappings are YAML (`analyses=[audit]`).
    The result is validated with the profile, like a value in the file."""
    hints = typing.get_type_hints(Config)
    overrides = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: write it as key=value, e.g. --set epochs=2")
        overrides[key] = _typed(key, text.strip(), hints.get(key))
    return overrides


def typed_values(values: dict) -> dict:
    """Values as Snakemake's --config gives them, typed as --set types them: Snakemake reads `true`,
    `[1, 2]` or `{captions: 2}` with YAML's base loader, which leaves every scalar text (it types
    only a bare number and True/False), so `seeds=[1,2]` would arrive as ['1', '2']."""
    hints = typing.get_type_hints(Config)
    return {key: _retyped(key, value, hints.get(key)) for key, value in values.items()}


def _retyped(key: str, value, expected):
    if isinstance(value, str):
        return _typed(key, value, expected)
    if isinstance(value, list):
        return [_retyped(key, item, None) for item in value]
    if isinstance(value, dict):
        return {name: _retyped(key, item, None) for name, item in value.items()}
    return value


def _typed(key: str, text: str, expected):
    if expected is str:
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text
    if expected is float:
        try:
            return float(text)
        except ValueError:
            return text  # refused with the key's name by from_dict
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {key}={text}: the value is not valid YAML ({error})") from None
