"""The model registry: every network an experiment names comes from `create_model(name, **kwargs)`."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from retinalight.errors import ConfigError, UnknownNameError, close_matches

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_DYNAMIC: list[tuple[str, Callable[..., nn.Module]]] = []  # (prefix, factory(name, **kwargs))
_REVISIONS: dict[str, int] = {}


def register_model(name: str, revision: int = 0):
    """Decorator: register a factory under `name`; its docstring's first line documents it.

    `revision`: raise it by one with every fix that changes what the model computes for the same arguments.
    It is part of a run's identity (from 1 on), so run folders trained by the earlier code are not reused."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = factory
        _REVISIONS[name] = revision
        return factory

    return wrap


def register_prefix(prefix: str, factory: Callable[..., nn.Module]) -> None:
    """Names starting with `prefix` that are not listed are built by factory(name, **kwargs)."""
    _DYNAMIC.append((prefix, factory))


def list_models() -> dict[str, str]:
    """{name: one-line description} of every registered model."""
    return {name: (inspect.getdoc(f) or "").splitlines()[0] for name, f in sorted(_MODELS.items())}


def model_revision(name: str) -> int:
    """The code revision of a registered model (0 for names built by a prefix factory)."""
    return _REVISIONS.get(name, 0)


def model_arguments(name: str) -> list[str]:
    """The keyword arguments a registered model accepts (for config validation)."""
    factory = _factory(name)
    return [p for p in inspect.signature(factory).parameters if p not in ("name", "kwargs")]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. Unknown names and unknown arguments fail with one line."""
    factory = _factory(name)
    accepted = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        for key in kwargs:
            if key not in accepted:
                raise ConfigError(f"model {name!r} has no argument {key!r}{close_matches(key, accepted)}")
    if name not in _MODELS:
        return factory(name, **kwargs)
    return factory(**kwargs)


def _factory(name: str) -> Callable[..., nn.Module]:
    if name in _MODELS:
        return _MODELS[name]
    for prefix, factory in _DYNAMIC:
        if name.startswith(prefix):
            return factory
    raise UnknownNameError(f"unknown model {name!r}{close_matches(name, _MODELS)}; `python -m retinalight.models` lists them")
