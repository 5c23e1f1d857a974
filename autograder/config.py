"""Grading settings (parts, points per property, perplexity thresholds per track, resource limits) from a TOML file.

Numbers that an instructor may need to change between terms live in ``config.toml``, not in code, so a test can
grade with thresholds measured on its own fixture model and a course can move the bar without a code change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

DEFAULT_CONFIG = Path(__file__).resolve().parent / "config.toml"


@dataclass(frozen=True)
class Part:
    """One graded part: its name (= the solution cell's grade_id), notebook, points and points per property."""

    name: str
    notebook: str
    points: float
    weights: dict[str, float] = field(default_factory=dict)
    optional: bool = False  # an extra stage the instructor may grade or not (``graded`` in config.toml)

    @property
    def test_id(self) -> str:
        """grade_id of the hidden test cell that carries this part's score in the gradebook."""
        return f"test_{self.name}"


@dataclass(frozen=True)
class Config:
    parts: tuple[Part, ...]  # the graded parts: an optional part only when its ``graded`` is true
    perplexity: dict
    limits: dict
    grading: dict
    path: Path
    ungraded: tuple[Part, ...] = ()  # optional parts the instructor left ungraded: released, never graded

    def part(self, name: str) -> Part:
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(name)

    @property
    def thresholds(self) -> tuple[float, float]:
        """(full-credit perplexity, zero-credit perplexity) of the configured track."""
        track = self.perplexity["tracks"][self.perplexity["track"]]
        return float(track["full"]), float(track["zero"])


def load(path: str | Path | None = None) -> Config:
    """Reads a config file (default ``autograder/config.toml``); a part's property points must add up to its points.

    An ``optional`` part with ``graded = false`` lands in ``ungraded``: the probe never runs it, the judge never
    scores it, and the release carries its notebook without a graded test cell (autograder/course.py)."""
    path = Path(path) if path else DEFAULT_CONFIG
    raw = tomllib.loads(path.read_text())
    parts: list[Part] = []
    ungraded: list[Part] = []
    for name, spec in raw["parts"].items():
        weights = {k: float(v) for k, v in spec.get("weights", {}).items()}
        if weights and not math.isclose(sum(weights.values()), float(spec["points"])):
            raise ValueError(f"{path}: the property points of {name} add up to {sum(weights.values())}, "
                             f"not to its {spec['points']} points")
        part = Part(name, spec["notebook"], float(spec["points"]), weights, bool(spec.get("optional", False)))
        if not part.optional and not spec.get("graded", True):
            raise ValueError(f"{path}: {name} is a core part and cannot be ungraded (only optional parts can)")
        (parts if spec.get("graded", True) else ungraded).append(part)
    return Config(tuple(parts), raw["perplexity"], raw["limits"], raw.get("grading", {}), path.resolve(),
                  tuple(ungraded))
