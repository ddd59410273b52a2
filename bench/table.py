"""The one table `make bench` ends with: every figure, what it is read against in the same run, the ratio,
and the goal it has (met or not)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Goal:
    """A ratio to reach (at least `min_ratio`), or a value to stay under (at most `max_value`)."""

    text: str
    min_ratio: float | None = None
    max_value: float | None = None

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        if self.min_ratio is not None:
            return None if ratio is None else ratio >= self.min_ratio
        if self.max_value is not None:
            return None if value is None else value <= self.max_value
        return None


@dataclass(frozen=True)
class Figure:
    key: str  # unique within a run; what another figure names as its baseline
    workload: str
    config: str
    text: str  # the figure as printed
    value: float | None = None
    baseline: str | None = None  # the key of the figure this one is read against (ratio = value / its value)
    goal: Goal | None = None


@dataclass
class Table:
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        assert all(f.key != figure.key for f in self.figures), figure.key
        self.figures.append(figure)
        print(f"{figure.config}: {figure.workload}: {figure.text}", flush=True)
        return figure

    def note(self, workload: str, config: str, text: str) -> None:
        """A row with no value to compare (another module's figures, say)."""
        self.add(Figure(f"{config}/{workload}", workload, config, text))

    def ratio(self, figure: Figure) -> float | None:
        if figure.baseline is None or figure.value is None:
            return None
        base = next((f for f in self.figures if f.key == figure.baseline), None)
        if base is None or not base.value:
            return None
        return figure.value / base.value

    def render(self) -> str:
        lines = ["| workload | configuration | figure | read against | ratio | goal |", "|---|---|---|---|---|---|"]
        by_key = {f.key: f for f in self.figures}
        for f in self.figures:
            ratio = self.ratio(f)
            against = f"{by_key[f.baseline].config}" if f.baseline in by_key else "-"
            goal = "-"
            if f.goal is not None:
                met = f.goal.met(f.value, ratio)
                goal = f.goal.text + {True: " (met)", False: " (NOT met)", None: ""}[met]
            shown = f"{ratio:.2f}" if ratio is not None else "-"
            lines.append(f"| {f.workload} | {f.config} | {f.text} | {against} | {shown} | {goal} |")
        return "\n".join(lines)
