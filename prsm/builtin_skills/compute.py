"""Built-in compute skills: numbers, texts, lists, and the reductions over a task's outputs."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from prsm.skill import skill

NUMBER = {"type": "number"}
TEXT = {"type": "string"}
LIST = {"type": "array"}


@skill("math.square", input_schema=NUMBER, output_schema=NUMBER, nominal_s=0.0005)
def square(x: float) -> float:
    """x → x², for a number x"""
    return x * x


@skill("math.sqrt", input_schema=NUMBER, output_schema=NUMBER, nominal_s=0.0005)
def sqrt(x: float) -> float:
    """x → √x; fails on a negative x"""
    return math.sqrt(x)


@skill("math.primes_below", input_schema=NUMBER, output_schema={"type": "integer"})
def primes_below(n: float) -> int:
    """n → how many primes are below n (a NumPy sieve; n up to 10⁸)"""
    if not 0 <= n <= 10**8:
        raise ValueError(f"n must be within 0..1e8, got {n}")
    size = int(n)
    if size < 3:
        return 0
    sieve = np.ones(size, dtype=bool)
    sieve[:2] = False
    for p in range(2, math.isqrt(size - 1) + 1):
        if sieve[p]:
            sieve[p * p :: p] = False
    return int(sieve.sum())


@skill("text.clean", input_schema=TEXT, output_schema=TEXT, nominal_s=0.001)
def clean(s: str) -> str:
    """lower case, punctuation removed"""
    return re.sub(r"[^\w\s]", "", s.lower())


@skill("text.tokens", input_schema=TEXT, output_schema=LIST, nominal_s=0.001)
def tokens(s: str) -> list[str]:
    """a text → its words"""
    return s.split()


@skill("text.count", input_schema=LIST, output_schema={"type": "integer"}, nominal_s=0.0005)
def count(xs: list[Any]) -> int:
    """a list → its length"""
    return len(xs)


def _numbers(xs: list[Any]) -> np.ndarray:
    return np.asarray(xs, dtype=float)


@skill("reduce.sum", kind="reduce", nominal_s=0.001)
def total(xs: list[Any]) -> Any:
    """the sum of numbers (integers add exactly)"""
    return sum(xs) if all(isinstance(x, int) for x in xs) else math.fsum(xs)


@skill("reduce.mean", kind="reduce", nominal_s=0.001)
def mean(xs: list[Any]) -> float:
    """the mean of numbers"""
    return float(_numbers(xs).mean())


@skill("reduce.min", kind="reduce", nominal_s=0.001)
def smallest(xs: list[Any]) -> Any:
    """the smallest number"""
    return min(xs)


@skill("reduce.max", kind="reduce", nominal_s=0.001)
def largest(xs: list[Any]) -> Any:
    """the largest number"""
    return max(xs)


@skill("reduce.count", kind="reduce", nominal_s=0.001)
def how_many(xs: list[Any]) -> int:
    """how many outputs"""
    return len(xs)


@skill("reduce.stats", kind="reduce", nominal_s=0.001)
def stats(xs: list[Any]) -> dict[str, float]:
    """count, mean, std, min, max"""
    a = _numbers(xs)
    return {"count": int(a.size), "mean": float(a.mean()), "std": float(a.std()),
            "min": float(a.min()), "max": float(a.max())}  # fmt: skip


@skill("reduce.concat", kind="reduce", nominal_s=0.001)
def concat(xss: list[list[Any]]) -> list[Any]:
    """lists joined into one"""
    return [x for xs in xss for x in xs]
