"""One small registry mechanism for everything avlearn builds by name.

Methods, tasks, backbones, datasets and scorers register at their definition site with a decorator;
``avlearn info`` lists them. A name is looked up in exactly one flat table: no scopes, no nesting.
"""

from __future__ import annotations

import difflib
import inspect
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from avlearn.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


class Registry:
    """A name -> builder table for one kind of component (``"method"``, ``"task"`` ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: ``@METHODS.register("baseline")`` (or no name: the object's ``__name__``)."""

        def add(obj: F) -> F:
            key = name or obj.__name__
            if key in self._entries and self._entries[key] is not obj:
                other = self._entries[key]
                raise KeyError(f"{self.kind} '{key}' is already registered by {other.__module__}.{other.__qualname__}")
            self._entries[key] = obj
            return obj

        return add

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered as ``name``; an unknown name lists the valid ones."""
        if name in self._entries:
            return self._entries[name]
        close = difflib.get_close_matches(name, list(self._entries), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        known = ", ".join(self.names()) or "(none)"
        raise ConfigError(f"unknown {self.kind} '{name}'.{hint} Registered {self.kind}s: {known}")

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Look up ``name`` and call its builder."""
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def describe(self, notes: Mapping[str, str] | None = None) -> dict[str, str]:
        """Name -> one line for ``avlearn info``: the first paragraph of the builder's docstring, whole.

        A builder registered under several names (variants of one class, e.g. ``dgsct`` and ``dgsct_tiny``) shares
        one docstring, so such a name is described by ``notes[name]`` when given (``avlearn info`` passes the first
        sentence of each variant's config file): every name's line then says what distinguishes it.
        """
        notes = notes or {}
        uses = Counter(id(builder) for builder in self._entries.values())
        return {
            n: notes[n] if uses[id(self._entries[n])] > 1 and n in notes else _first_paragraph(self._entries[n])
            for n in self.names()
        }

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def _first_paragraph(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring on one line ("" without a docstring)."""
    return " ".join(inspect.cleandoc(obj.__doc__ or "").split("\n\n")[0].split())


BACKBONES = Registry("backbone")
METHODS = Registry("method")
TASKS = Registry("task")
DATASETS = Registry("dataset")
SCORERS = Registry("scorer")

ALL: dict[str, Registry] = {
    "backbones": BACKBONES,
    "methods": METHODS,
    "tasks": TASKS,
    "datasets": DATASETS,
    "scorers": SCORERS,
}
