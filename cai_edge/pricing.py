"""Cloud cost model: AWS Lambda on-demand prices, in one documented table.

Prices: AWS Lambda, US East (N. Virginia), first duration tier (the first 6 billion GB-s a
month), as published by AWS and recorded here on 2026-11-25 — they change rarely but do change,
and other regions differ; edit ``LAMBDA_PRICES`` (or pass your own) for yours.
Laptops and edge nodes have no cloud cost in this model (hardware and power are not priced).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PRICES_DATE = "2026-11-25"
PRICES_REGION = "us-east-1"


@dataclass(frozen=True)
class LambdaPrice:
    usd_per_gb_second: float
    usd_per_request: float


LAMBDA_PRICES = {
    "x86_64": LambdaPrice(usd_per_gb_second=0.0000166667, usd_per_request=0.20 / 1_000_000),
    "arm64": LambdaPrice(usd_per_gb_second=0.0000133334, usd_per_request=0.20 / 1_000_000),
}
MB_PER_VCPU = 1769  # Lambda allocates one vCPU per 1,769 MB of memory
MAX_VCPUS = 6


def lambda_vcpus(memory_mb: int) -> float:
    """vCPUs Lambda gives a function of ``memory_mb`` (proportional, at most 6)."""
    return min(MAX_VCPUS, memory_mb / MB_PER_VCPU)


def lambda_threads(memory_mb: int) -> int:
    """Intra-op threads to use at ``memory_mb``: the vCPUs, rounded up, 1 to 6."""
    return max(1, min(MAX_VCPUS, math.ceil(memory_mb / MB_PER_VCPU)))


def billed_ms(duration_ms: float) -> int:
    """Lambda bills duration rounded up to the millisecond."""
    return int(math.ceil(duration_ms))


def lambda_cost_usd(duration_ms: float, memory_mb: int, architecture: str = "x86_64", requests: int = 1) -> float:
    """On-demand cost of ``requests`` invocations totalling ``duration_ms`` at ``memory_mb``."""
    price = LAMBDA_PRICES[architecture]
    gb_seconds = billed_ms(duration_ms) / 1000.0 * memory_mb / 1024.0
    return gb_seconds * price.usd_per_gb_second + requests * price.usd_per_request


def usd_per_million_galaxies(galaxies_per_s: float, memory_mb: int, architecture: str = "x86_64", galaxies_per_request: int = 10_000) -> float:
    """Cost per million galaxies at a sustained throughput, with one request per ``galaxies_per_request``."""
    seconds = 1_000_000 / galaxies_per_s
    requests = math.ceil(1_000_000 / galaxies_per_request)
    price = LAMBDA_PRICES[architecture]
    return seconds * memory_mb / 1024.0 * price.usd_per_gb_second + requests * price.usd_per_request
