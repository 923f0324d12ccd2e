"""Device tiers: where a bundle may run, as thread counts, batch sizes and memory.

A tier this machine cannot reproduce (more cores than it has, Lambda's CPU share) is emulated
by its thread count, capped at the cores available here, and every report row says so.
"""

from __future__ import annotations

from cai_edge.errors import UsageError

from dataclasses import dataclass

from cai_edge.machine import usable_cores
from cai_edge.pricing import lambda_threads, lambda_vcpus


@dataclass(frozen=True)
class Tier:
    name: str
    kind: str  # "laptop", "edge" or "lambda"
    threads: int  # threads the tier would use
    batch_size: int
    memory_mb: int | None = None  # Lambda only

    def threads_here(self) -> int:
        return min(self.threads, usable_cores())

    def emulation_note(self) -> str | None:
        """Why this row is not the real tier, or None when it is."""
        notes = []
        if self.kind == "lambda":
            notes.append(f"Lambda {self.memory_mb} MB ({lambda_vcpus(self.memory_mb):.2f} vCPU) emulated with {self.threads_here()} thread(s) on this CPU")
        elif self.threads > usable_cores():
            notes.append(f"{self.threads} threads wanted, {usable_cores()} cores here")
        return "; ".join(notes) or None


def _lambda(memory_mb: int) -> Tier:
    return Tier(f"lambda-{memory_mb}", "lambda", lambda_threads(memory_mb), 256, memory_mb)


def known_tiers() -> dict[str, Tier]:
    tiers = [
        Tier("laptop", "laptop", usable_cores(), 256),
        Tier("edge-1t", "edge", 1, 64),
        Tier("edge-4t", "edge", 4, 64),
        _lambda(1769),
        _lambda(3008),
        _lambda(10240),
    ]
    return {t.name: t for t in tiers}


def parse_tiers(text: str) -> list[Tier]:
    tiers = known_tiers()
    chosen = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name in tiers:
            chosen.append(tiers[name])
        elif name.startswith("lambda-") and name[7:].isdigit():
            chosen.append(_lambda(int(name[7:])))
        else:
            raise UsageError(f"unknown tier {name!r}; known: {', '.join(tiers)} (or lambda-<MB>)")
    return chosen
