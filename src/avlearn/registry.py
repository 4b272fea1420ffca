"""One small registry mechanism for everything avlearn builds by name.

Methods, tasks, backbones, datasets and scorers register at their definition site with a decorator;
``avlearn info`` lists them. A name is looked up in exactly one flat table: no scopes, no nesting.
A component package imports all its modules (``register_package``), so a new file registers by being there.
A task registers with what it brings besides its class (``TaskSpec``: its data pipeline, the AVSynth part it reads
and its report), so a new task is one file and one yaml, and nothing else names it.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TaskSpec:
    """What a task registers besides its class.

    Attributes:
        pipeline: ``(run config, audio preprocess) -> Splits``, the task's data (``avlearn.data.pipelines``);
            None: the task has no pipeline yet (``build_splits`` refuses it).
        synth_part: The AVSynth part the task reads: ``"events"`` (AVE / LLP clips), ``"avs"`` (AVSBench S4 and
            MS3), ``"avqa"``, ``"sounds"`` (ESC-50 clips) or ``"images"`` (CoOp images); only that part is rendered
            for it. A generic task whose data follows ``data.benchmark`` gives a callable ``(data config) -> part``
            instead (``avlearn.data.pipelines.clips.benchmark_part``); ``part`` resolves either.
        report: How a finished run is reported (``avlearn.viz.reports.Report``: chance levels and a plot); None: no
            chance level and no plot.
        stores: The stores its pipeline reads instead of decoding media: ``"clips"`` (``data.store``, made by
            ``avlearn extract``) and ``"features"`` (``backbone.store`` with ``features`` towers, made by
            ``avlearn extract --features``). ``build_splits`` refuses any other store before decoding anything.
    """

    pipeline: Callable[..., Any] | None = None
    synth_part: str | Callable[[Any], str] = "events"
    report: Any = None
    stores: tuple[str, ...] = ()

    def part(self, data: Any = None) -> str:
        """The AVSynth part for the ``data`` config; without one, a callable part is named by its ``label`` (or
        ``__name__``), e.g. for ``avlearn train --help``."""
        if isinstance(self.synth_part, str):
            return self.synth_part
        if data is None:
            return getattr(self.synth_part, "label", self.synth_part.__name__)
        return self.synth_part(data)


STORES = ("clips", "features")  # what a task's pipeline may read instead of media (``TaskSpec.stores``)


class TaskRegistry(Registry):
    """The task table: each name also carries its ``TaskSpec``."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self._specs: dict[str, TaskSpec] = {}

    def register(  # type: ignore[override]
        self,
        name: str | None = None,
        *,
        pipeline: Callable[..., Any] | None = None,
        synth_part: str | Callable[[Any], str] = "events",
        report: Any = None,
        stores: tuple[str, ...] = (),
    ) -> Callable[[F], F]:
        """Decorator: ``@TASKS.register("avs_s4", pipeline=avs_pipeline, synth_part="avs", report=AVS)``."""
        add = super().register(name)
        unknown = set(stores) - set(STORES)
        if unknown:
            raise ValueError(f"task {name!r}: unknown stores {sorted(unknown)}; expected some of {STORES}")

        def add_with_spec(obj: F) -> F:
            add(obj)  # refuses a name registered by another class before its spec is replaced
            self._specs[name or obj.__name__] = TaskSpec(pipeline, synth_part, report, tuple(stores))
            return obj

        return add_with_spec

    def spec(self, name: str) -> TaskSpec:
        """The ``TaskSpec`` of ``name``; an unknown name lists the registered tasks (as ``get``)."""
        self.get(name)
        return self._specs[name]

    def reading(self, store: str) -> list[str]:
        """The tasks whose pipeline reads ``store`` (``"clips"`` or ``"features"``)."""
        return [name for name in self.names() if store in self._specs[name].stores]


BACKBONES = Registry("backbone")
METHODS = Registry("method")
TASKS = TaskRegistry("task")
DATASETS = Registry("dataset")
SCORERS = Registry("scorer")

ALL: dict[str, Registry] = {
    "backbones": BACKBONES,
    "methods": METHODS,
    "tasks": TASKS,
    "datasets": DATASETS,
    "scorers": SCORERS,
}


def register_package(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (its ``__path__``): their decorators fill the registries."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
