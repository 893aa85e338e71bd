"""The web dashboard's files, shipped as package data and served by the gateway
(``derivex.gateway.pages``): ``static/`` (the trader and operator pages, their ES modules and
style sheet) and ``vendor/`` (chart libraries copied from npm with their licences; see
``vendor/README.md``). Nothing here runs in Python; see docs/dashboard.md."""

from __future__ import annotations

from pathlib import Path

UI_DIR = Path(__file__).resolve().parent
STATIC_DIR = UI_DIR / "static"
VENDOR_DIR = UI_DIR / "vendor"
