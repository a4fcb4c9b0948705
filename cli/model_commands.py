"""Commands about models and training: models, train, evaluate, import-features, bench."""

from __future__ import annotations

COMMANDS: list = []
