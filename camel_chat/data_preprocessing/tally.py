"""Counting what a pipeline step kept and what it dropped, by reason.

Every step that can drop a record takes a `Tally`, calls `keep()` or `drop(reason, where)`,
and the command prints `tally.summary()` at the end, so nothing disappears silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    """Kept/dropped counters for one named step, with the first few examples per reason."""

    name: str
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 3

    def keep(self, n: int = 1) -> None:
        self.kept += n

    def drop(self, reason: str, where: str = "", n: int = 1) -> None:
        self.dropped[reason] += n
        if where:
            seen = self.examples.setdefault(reason, [])
            if len(seen) < self.max_examples:
                seen.append(where)

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def merge(self, other: Tally) -> None:
        """Add another tally's counts into this one."""
        self.kept += other.kept
        for reason, n in other.dropped.items():
            self.dropped[reason] += n
            seen = self.examples.setdefault(reason, [])
            for where in other.examples.get(reason, []):
                if len(seen) < self.max_examples:
                    seen.append(where)

    def summary(self) -> str:
        """One line of totals, then one line per drop reason with example locations."""
        lines = [f"{self.name}: kept {self.kept}, dropped {self.total_dropped}"]
        for reason, n in sorted(self.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
            where = ", ".join(self.examples.get(reason, []))
            lines.append(f"  dropped {n:>7}  {reason}" + (f"  (e.g. {where})" if where else ""))
        return "\n".join(lines)
