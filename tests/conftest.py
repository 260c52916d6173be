"""Shared fixtures: the real datasets (from $RETINALIGHT_DATA, else ../shared/data) at small scale."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _data_root() -> Path:
    return Path(os.environ.get("RETINALIGHT_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if not (root / "DRIVE").is_dir() or not (root / "CHASE_DB1").is_dir():
        pytest.skip(f"DRIVE and CHASE_DB1 not found under {root} (set RETINALIGHT_DATA)")
    return root


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
