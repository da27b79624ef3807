"""Sphinx configuration: Sphinx's own default theme, no extensions, no network."""

project = "orderbook"
author = "orderbook contributors"
release = "0.1.0"

extensions: list[str] = []
exclude_patterns = ["_build"]
# Literal blocks (``::``) are shown as written; examples name their language.
highlight_language = "none"
html_theme = "alabaster"
html_static_path: list[str] = []
html_show_sourcelink = False
