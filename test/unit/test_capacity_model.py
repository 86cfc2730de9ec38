"""bench/capacity.py: Erlang's C formula and the replica plan built on it."""

import math

import pytest

from bench.capacity import Costs, erlang_c, plan, wait_p99_s


@pytest.mark.parametrize(
    ("servers", "offered", "expected"),
    # Textbook values: one server is P(wait) = utilisation; two servers at one
    # Erlang wait a third of the time.
    [(1, 0.5, 0.5), (1, 0.9, 0.9), (2, 1.0, 1 / 3), (2, 0.0, 0.0)],
)
def test_erlang_c_matches_known_values(servers: int, offered: float, expected: float) -> None:
    assert erlang_c(servers, offered) == pytest.approx(expected)


def test_waits_grow_without_bound_near_saturation() -> None:
    assert wait_p99_s(2, rate=10.0, service_s=0.01) == 0.0  # waits less than 1% of the time
    light, heavy = wait_p99_s(2, 120.0, 0.01), wait_p99_s(2, 190.0, 0.01)
    assert 0.0 < light < heavy
    assert math.isinf(wait_p99_s(2, 200.0, 0.01))


def test_single_server_wait_quantile_is_the_exponential_one() -> None:
    # M/M/1: P(W > t) = rho * exp(-(mu - lambda) t).
    rate, service = 80.0, 0.01
    rho = rate * service
    expected = math.log(rho / 0.01) / (1 / service - rate)
    assert wait_p99_s(1, rate, service) == pytest.approx(expected)


def test_plan_meets_the_target_with_the_fewest_replicas() -> None:
    costs = Costs(gateway_cpu_s=0.0025, model_cpu_s=0.014, lone_p99_s=0.03)
    chosen = plan(costs, rate=500.0, p99_s=0.25, cores=2, max_util=0.7)
    assert chosen["predicted_p99_ms"] <= 250.0
    assert chosen["tf_serving_utilisation"] <= 0.7
    assert chosen["gateway_utilisation"] <= 0.7
    # The model server costs several times the gateway, so it needs more replicas.
    assert chosen["tf_serving_replicas"] > chosen["gateway_replicas"]
    # One replica fewer of TF Serving would break the utilisation cap.
    fewer = (chosen["tf_serving_replicas"] - 1) * 2 * 0.7
    assert 500.0 * costs.model_cpu_s > fewer


def test_a_tighter_p99_needs_more_replicas() -> None:
    costs = Costs(gateway_cpu_s=0.0025, model_cpu_s=0.014, lone_p99_s=0.03)
    loose = plan(costs, rate=500.0, p99_s=0.5, cores=2, max_util=0.95)
    tight = plan(costs, rate=500.0, p99_s=0.045, cores=2, max_util=0.95)
    assert tight["tf_serving_replicas"] + tight["gateway_replicas"] > (
        loose["tf_serving_replicas"] + loose["gateway_replicas"]
    )
    assert tight["predicted_p99_ms"] <= 45.0
