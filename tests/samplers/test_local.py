"""nanonas.samplers.local: local search from the best architecture so far."""

from __future__ import annotations

import pytest
from landscape import (
    check_concentrates_far_faster_than_random,
    check_multi_objective_finds_a_far_better_pareto_set_than_random,
    check_three_objectives_accuracy_params_and_flops,
)


@pytest.mark.parametrize("seed", [0, 1])
def test_concentrates_far_faster_than_random(seed):
    check_concentrates_far_faster_than_random("local", seed)


def test_multi_objective_finds_a_far_better_pareto_set_than_random():
    check_multi_objective_finds_a_far_better_pareto_set_than_random("local")


def test_three_objectives_accuracy_params_and_flops():
    check_three_objectives_accuracy_params_and_flops("local")
