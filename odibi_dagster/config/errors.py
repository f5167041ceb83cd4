"""Validation problems and the one error that carries all of them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a config: where (file, step, field) and what."""

    file: str
    step: str | None
    field: str | None
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [where]
        if self.step is not None:
            parts.append(f"step '{self.step}'")
        elif self.field is not None:
            parts.append("pipeline")
        if self.field is not None:
            parts.append(self.field)
        # One problem, one line: newlines from the config (a step name, a value) are shown escaped.
        text = ": ".join([*parts, self.message])
        return text.replace("\r", "\\r").replace("\n", "\\n")


class ConfigValidationError(Exception):
    """Raised when a config is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems), key=lambda p: (p.file, p.line or 0, p.step or "", p.field or ""))
        super().__init__(self._render())

    def _render(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in pipeline config:"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])

    def __str__(self) -> str:
        return self._render()
