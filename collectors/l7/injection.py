"""placeholder"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InjectionResult:
    score: float
    indicators: tuple[str, ...]


class InjectionScorer:
    def score(self, text: str) -> InjectionResult:
        return InjectionResult(0.0, ())


def default_scorer() -> InjectionScorer:
    return InjectionScorer()
