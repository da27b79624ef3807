"""docs/configuration.rst documents every config key, in its section's table."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from orderbook import config

REPO = Path(__file__).resolve().parent.parent


def documented_sections() -> dict[str, str]:
    """Section name -> the text under its ``[section]`` heading in the reference."""
    text = (REPO / "docs" / "configuration.rst").read_text("utf-8")
    parts = re.split(r"\n``\[(\w+)\]``\n=+\n", text)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_config_key_is_in_the_reference():
    """A key added to orderbook.config without a row in docs/configuration.rst fails here."""
    sections = documented_sections()
    missing = [
        f"[{name}] {field.name}"
        for name, settings in config.SECTIONS.items()
        for field in dataclasses.fields(settings)
        if f"``{field.name}``" not in sections.get(name, "")
    ]
    assert not missing, f"not documented in docs/configuration.rst: {', '.join(missing)}"


def test_the_reference_names_no_unknown_section():
    """Every section documented exists in orderbook.config."""
    assert set(documented_sections()) == set(config.SECTIONS)
