"""A generated demo bank: Countdown- and arithmetic-style problems with a difficulty field."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

OPS = ["+", "-", "*"]


def _arithmetic(rng: random.Random, level: int) -> tuple[str, str]:
    terms = level + 1
    hi = 10 ** min(1 + level // 2, 4)
    nums = [rng.randint(1, hi) for _ in range(terms)]
    expr = str(nums[0])
    for n in nums[1:]:
        expr += f" {rng.choice(OPS[: 2 + (level >= 2)])} {n}"
    return f"Compute {expr}.", str(eval(expr))  # noqa: S307 - our own generated expression


def _countdown(rng: random.Random, level: int) -> tuple[str, str]:
    count = 2 + level
    nums = [rng.randint(1, 25 if level < 3 else 100) for _ in range(count)]
    expr = str(nums[0])
    for n in nums[1:]:
        expr += f" {rng.choice(OPS)} {n}"
    target = eval(expr)  # noqa: S307 - our own generated expression
    shuffled = nums[:]
    rng.shuffle(shuffled)
    prompt = (f"Using the numbers {shuffled}, each exactly once, with + - *, "
              f"make {target}.")
    return prompt, expr


def demo_problems(n: int = 4000, seed: int = 0) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(n):
        level = rng.randint(1, 5)
        family = "countdown" if rng.random() < 0.5 else "arithmetic"
        make = _countdown if family == "countdown" else _arithmetic
        prompt, answer = make(rng, level)
        yield {"external_id": f"{family}-{i:06d}", "prompt": prompt, "answer": answer,
               "metadata": {"family": family, "difficulty": level}}
