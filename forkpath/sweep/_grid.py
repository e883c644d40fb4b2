"""The grid file of ``forkpath sweep``: which strategy configurations, at which budgets.

A grid names the models once, then configurations; a configuration is one strategy with its
parameters and, optionally, one parameter swept over a list of values. Every (configuration,
value) is a *point*; each point runs as one flow (a ``solve`` node with the strategy, then a
``judge`` node with the judging verifier) through the batch runner::

    name: humaneval-small
    models: {small: local/qwen2.5-coder-0.5b}
    verifier: public_tests        # what the strategies may look at
    judge: python_tests           # what decides an answer (the hidden tests)
    configs:
      greedy: {strategy: best_of_n, params: {n: 1, temperature: 0}, models: {default: small}}
      best_of_n:
        strategy: best_of_n
        params: {temperature: 0.8}
        models: {default: small}
        sweep: {n: [1, 2, 4, 8]}

The points of a configuration run from the largest value down. A strategy that draws its
samples at sample indexes ``0 .. n-1`` (``best_of_n``, ``self_consistency``) thus draws them
once, at the largest ``n``: the smaller budgets read the first samples of the same draw from
the store's generation cache, and are charged what those samples cost when they were drawn
(``Usage.replayed_*``).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from forkpath._errors import ConfigError
from forkpath.flows import (
    EdgeSpec,
    Flow,
    FlowSpec,
    LineMap,
    ModelSpec,
    NodeSpec,
    VerifierSpec,
    load_yaml_file,
    render_validation_error,
)

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"


class Price(BaseModel):
    """US dollars per million tokens, for models whose calls have no price of their own."""

    model_config = ConfigDict(extra="forbid")

    prompt: float = Field(default=0.0, ge=0)
    completion: float = Field(default=0.0, ge=0)


class ConfigSpec(BaseModel):
    """One strategy configuration of a grid."""

    model_config = ConfigDict(extra="forbid")

    strategy: str = Field(min_length=1)
    """Registry name of the strategy (``best_of_n``, ``escalate``, ...)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Its parameters, as in a flow node."""
    models: dict[str, str] = Field(default_factory=dict)
    """The strategy's model roles mapped to the grid's models (as a flow node's ``models:``)."""
    sweep: dict[str, list[Any]] | None = None
    """One parameter and the values it takes (``{n: [1, 2, 4, 8]}``); run from the largest down."""

    @field_validator("sweep")
    @classmethod
    def _one_parameter(cls, sweep: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if sweep is None:
            return None
        if len(sweep) != 1:
            raise ValueError(
                f"sweep one parameter at a time; got {len(sweep)} ({', '.join(sweep) or 'none'})"
            )
        (values,) = sweep.values()
        if not values:
            raise ValueError("an empty list of values; give at least one")
        if len({repr(v) for v in values}) != len(values):
            raise ValueError("a value appears twice")
        return sweep


class GridSpec(BaseModel):
    """A whole grid file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    models: dict[str, ModelSpec | str]
    """Named models, as in a flow (``default`` is what configurations use when they map none)."""
    verifier: VerifierSpec | str | None = None
    """What the strategies may verify with (``public_tests`` for code: never the hidden tests)."""
    judge: VerifierSpec | str | None = None
    """What decides whether an answer is right (default: ``python_tests`` for code tasks,
    ``math_answer`` for math)."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """Dollars per million tokens by model id, added to what the calls cost (local models cost 0)."""
    store: str | None = None
    """The store holding the sample cache (default: ``OUT/store.db``); a Redis URL for Ray workers
    on several machines."""
    configs: Annotated[dict[str, ConfigSpec], Field(min_length=1)]
    """The configurations, by name."""

    @field_validator("configs")
    @classmethod
    def _names(cls, configs: dict[str, ConfigSpec]) -> dict[str, ConfigSpec]:
        for name in configs:
            if not re.fullmatch(_NAME, name):
                raise ValueError(
                    f"configuration name {name!r} must be an identifier (letters, digits, _ and -)"
                )
        return configs


class Point(BaseModel):
    """One (configuration, swept value) of a grid: what one batch run measures."""

    model_config = ConfigDict(extra="forbid")

    config: str
    param: str | None = None
    value: Any = None
    params: dict[str, Any]
    """The strategy's parameters at this point."""

    @property
    def name(self) -> str:
        return self.config if self.param is None else f"{self.config}@{self.param}={self.value}"

    @property
    def slug(self) -> str:
        """The point's folder name."""
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.name.replace("@", "."))


class Grid:
    """A loaded grid: its spec, where each key was in the file, and its points in run order."""

    def __init__(self, spec: GridSpec, lines: LineMap, base_dir: Path) -> None:
        self.spec, self.lines, self.base_dir = spec, lines, base_dir

    def points(self) -> list[Point]:
        """Every point; within a configuration, the largest swept value first."""
        points: list[Point] = []
        for name, config in self.spec.configs.items():
            if config.sweep is None:
                points.append(Point(config=name, params=copy.deepcopy(config.params)))
                continue
            ((param, values),) = config.sweep.items()
            for value in sorted(values, key=_order, reverse=True):
                params = {**copy.deepcopy(config.params), param: value}
                points.append(Point(config=name, param=param, value=value, params=params))
        for point in points:  # a saved file a parameter names is relative to the grid file
            saved = point.params.get("thresholds")
            if isinstance(saved, str) and not Path(saved).is_absolute():
                point.params["thresholds"] = str(self.base_dir / saved)
        return points

    def flow(self, point: Point, *, kind: str, store_url: str) -> Flow:
        """The flow one point runs: ``solve`` (the strategy) then ``judge`` (the judging verifier).

        Raises:
            ConfigError: the configuration does not make a valid flow (an unknown strategy or
                parameter, a role no model plays), at the configuration's line in the grid file.
        """
        spec = self.spec
        config = spec.configs[point.config]
        judge = spec.judge or ("python_tests" if kind == "code" else "math_answer")
        data: dict[str, Any] = {
            "name": f"{spec.name}.{point.slug}",
            "models": spec.models,
            "verifier": spec.verifier,
            "store": {"url": store_url},
            "nodes": {
                "solve": NodeSpec(strategy=config.strategy, params=point.params, models=config.models),
                "judge": NodeSpec(
                    verifier=judge if isinstance(judge, str) else judge.name, params=_params(judge)
                ),
            },
            "edges": [
                EdgeSpec.model_validate({"from": "solve", "to": "judge"}),
                EdgeSpec.model_validate({"from": "judge", "to": "end"}),
            ],
        }
        where = self.lines.where(("configs", point.config))
        try:
            flow = Flow.from_spec(FlowSpec.model_validate(data), base_dir=self.base_dir)
            flow.validate()
        except ValidationError as e:
            raise ConfigError(f"configuration {point.config!r}: {_first(e)}", where=where) from None
        except ConfigError as e:
            message = str(e)[len(e.where) + 2 :] if e.where and str(e).startswith(e.where) else str(e)
            raise ConfigError(f"configuration {point.config!r}: {message}", where=where) from None
        return flow


def _params(judge: VerifierSpec | str) -> dict[str, Any]:
    return {} if isinstance(judge, str) else dict(judge.params)


def _first(error: ValidationError) -> str:
    problem = error.errors()[0]
    return f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}"


def _order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) and not isinstance(value, bool) else (1, repr(value))


def load_grid(path: str | Path, *, calibrating: str | None = None) -> Grid:
    """Read and check a grid file; every problem is one :class:`ConfigError` at ``file:line``.

    Checked here: the YAML itself (as flows are), the grid's fields and types, and that every
    point makes a valid flow (strategy and verifier names, parameters and their ranges, roles).
    While calibrating, the configuration being calibrated (``calibrating``) is checked without
    its thresholds file, which calibration writes, and so is every other ladder of the grid
    (calibration reads none of them, and a grid's ladders are calibrated one at a time).
    """
    data, lines = load_yaml_file(path)
    if not isinstance(data, dict):
        raise ConfigError("a grid is a mapping with name, models and configs", where=f"{path}:1")
    try:
        spec = GridSpec.model_validate(data)
    except ValidationError as e:
        raise render_validation_error(e, lines, GridSpec) from None
    grid = Grid(spec, lines, Path(path).resolve().parent)
    ladders = {name for name, c in spec.configs.items() if c.strategy == "escalate"}
    for point in grid.points():
        if point.config == calibrating or (calibrating is not None and point.config in ladders):
            point.params.pop("thresholds", None)
            for stage in point.params.get("stages", []):
                if isinstance(stage, dict) and stage.get("gate") is not None:
                    stage.setdefault("threshold", 0.0)  # any value: calibration fits them
        grid.flow(point, kind="code", store_url=":memory:")
    return grid
