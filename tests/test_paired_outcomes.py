"""Per-seed comparison of two policies: the counts and the exact sign test behind RESULTS.md's paired claims."""

import math

import pytest

from mu0sim.rollouts.evaluate import paired_outcomes, sign_test_p


def episodes(successes: dict[int, bool]) -> list[dict]:
    return [{"seed": seed, "success": ok} for seed, ok in successes.items()]


def test_paired_outcomes_counts_only_the_seeds_both_played():
    a = episodes({0: True, 1: True, 2: False, 3: True, 4: False, 9: True})
    b = episodes({0: True, 1: False, 2: True, 3: True, 4: False, 7: True})
    pair = paired_outcomes(a, b)
    assert (pair.seeds, pair.both, pair.only_a, pair.only_b) == (5, 2, 1, 1)
    assert pair.p_value == 1.0


@pytest.mark.parametrize("only_a, only_b, expected", [
    (15, 3, 2 * sum(math.comb(18, i) for i in range(15, 19)) / 2 ** 18),  # 0.0075
    (3, 15, 2 * sum(math.comb(18, i) for i in range(15, 19)) / 2 ** 18),  # symmetric
    (5, 0, 2 / 32),
    (4, 4, 1.0),  # an even split: capped at 1
    (0, 0, 1.0),  # no discordant seeds: no evidence either way
])
def test_sign_test_p_is_the_two_sided_exact_binomial_tail(only_a, only_b, expected):
    assert sign_test_p(only_a, only_b) == pytest.approx(expected)
