"""A config.toml setting that takes true or false, given anything else (review R1 finding 8):
the error names the file, the setting, the value given and the fix, not a shared "must be a
bool"."""

from __future__ import annotations

import pytest

from kadtalk.app.config import _SCHEMA, ConfigError, load_config

BOOLS = [(section, key) for section, keys in _SCHEMA.items()
         for key, (_, kind) in keys.items() if kind is bool]


def test_the_bool_settings_are_the_known_ones():
    assert sorted(BOOLS) == [("relay", "enabled"), ("relay", "forward_private"),
                             ("routing", "other_addresses"), ("routing", "refresh_groups"),
                             ("web", "enabled")]


@pytest.mark.parametrize("section, key", BOOLS)
@pytest.mark.parametrize("written, shown", [
    ('"yes"', '"yes"'), ('"true"', '"true"'), ("1", "1"), ("0", "0"), ("0.5", "0.5"),
    ("[true]", "[true]"), ("1979-05-27", "1979-05-27"),
    ('"' + "x" * 80 + '"', '"' + "x" * 56 + "..."),  # cut at 60 characters
])
def test_a_non_bool_value_names_the_setting_the_value_and_the_fix(tmp_path, section, key,
                                                                   written, shown):
    path = tmp_path / "config.toml"
    path.write_text(f"[{section}]\n{key} = {written}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, tmp_path)
    assert str(error.value) == (f"config file {path}: [{section}] {key} must be true or false "
                                f"(no quotes), got {shown}")


@pytest.mark.parametrize("section, key", BOOLS)
def test_true_and_false_are_taken(tmp_path, section, key):
    name = _SCHEMA[section][key][0]
    for value in (True, False):
        path = tmp_path / "config.toml"
        path.write_text(f"[{section}]\n{key} = {str(value).lower()}\n")
        assert getattr(load_config(path, tmp_path), name) is value
