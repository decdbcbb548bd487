"""Caffe's learning-rate policies, the SGD update rule, solver config parsing, snapshots and resume."""
from __future__ import annotations

import numpy as np
import pytest

from feedstock.trainer.nn.net import Net
from feedstock.trainer.nn.solver import SGDSolver, SolverConfig, learning_rate


@pytest.mark.parametrize("fields,it,expected", [
    ({"lr_policy": "fixed", "base_lr": 0.1}, 12345, 0.1),
    # step: base_lr * gamma ^ floor(iter / stepsize)
    ({"lr_policy": "step", "base_lr": 0.1, "gamma": 0.5, "stepsize": 100}, 99, 0.1),
    ({"lr_policy": "step", "base_lr": 0.1, "gamma": 0.5, "stepsize": 100}, 100, 0.05),
    ({"lr_policy": "step", "base_lr": 0.1, "gamma": 0.5, "stepsize": 100}, 350, 0.0125),
    # multistep: one factor of gamma per stepvalue already reached
    ({"lr_policy": "multistep", "base_lr": 1.0, "gamma": 0.1, "stepvalue": [10, 20]}, 9, 1.0),
    ({"lr_policy": "multistep", "base_lr": 1.0, "gamma": 0.1, "stepvalue": [10, 20]}, 10, 0.1),
    ({"lr_policy": "multistep", "base_lr": 1.0, "gamma": 0.1, "stepvalue": [10, 20]}, 25, 0.01),
    # inv, Caffe's LeNet solver: 0.01 * (1 + 0.0001 * iter) ^ -0.75
    ({"lr_policy": "inv", "base_lr": 0.01, "gamma": 0.0001, "power": 0.75}, 0, 0.01),
    ({"lr_policy": "inv", "base_lr": 0.01, "gamma": 0.0001, "power": 0.75}, 10000, 0.01 * 2 ** -0.75),
    ({"lr_policy": "inv", "base_lr": 0.01, "gamma": 0.0001, "power": 0.75}, 5000, 0.01 * 1.5 ** -0.75),
    ({"lr_policy": "exp", "base_lr": 2.0, "gamma": 0.5}, 3, 0.25),
    ({"lr_policy": "poly", "base_lr": 1.0, "power": 2.0, "max_iter": 100}, 50, 0.25),
    ({"lr_policy": "sigmoid", "base_lr": 1.0, "gamma": 1.0, "stepsize": 10}, 10, 0.5),
])
def test_learning_rate_policies_match_hand_computed_values(fields, it, expected):
    assert learning_rate(SolverConfig(**fields), it) == pytest.approx(expected, rel=1e-12)


def test_inv_policy_value_at_lenet_iteration_100():
    # 0.01 * 1.01 ** -0.75, worked out: ln(1.01) = 0.00995033; * -0.75 = -0.00746275; exp = 0.99256503
    cfg = SolverConfig(lr_policy="inv", base_lr=0.01, gamma=0.0001, power=0.75)
    assert learning_rate(cfg, 100) == pytest.approx(0.0099256503, rel=1e-7)


def one_param_net(w0, b0):
    net = Net([{"type": "InnerProduct", "name": "ip", "num_output": 2,
                "param": [{"lr_mult": 1, "decay_mult": 1}, {"lr_mult": 2, "decay_mult": 0}]}],
              (2,), dtype=np.float64)
    net.params[0].data[...] = w0
    net.params[1].data[...] = b0
    return net


def test_momentum_and_weight_decay_update_matches_hand_computation():
    w0 = np.array([[1.0, -2.0], [0.5, 0.0]])
    b0 = np.array([0.1, -0.1])
    net = one_param_net(w0, b0)
    cfg = SolverConfig(base_lr=0.1, momentum=0.9, weight_decay=0.01)
    solver = SGDSolver(net, cfg)
    g1, g2 = np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[0.0, 1.0], [-1.0, 0.0]])
    gb = np.array([1.0, 1.0])
    # step 1: v = lr*(g + wd*w); w -= v.  Bias: lr_mult 2, decay_mult 0.
    net.params[0].grad[...], net.params[1].grad[...] = g1, gb
    solver.apply_update()
    v1 = 0.1 * (g1 + 0.01 * w0)
    w1 = w0 - v1
    vb1 = 0.2 * gb
    b1 = b0 - vb1
    np.testing.assert_allclose(net.params[0].data, w1, rtol=1e-14)
    np.testing.assert_allclose(net.params[1].data, b1, rtol=1e-14)
    # step 2: v = 0.9*v + lr*(g + wd*w)
    net.params[0].grad[...], net.params[1].grad[...] = g2, gb
    solver.apply_update()
    v2 = 0.9 * v1 + 0.1 * (g2 + 0.01 * w1)
    np.testing.assert_allclose(net.params[0].data, w1 - v2, rtol=1e-14)
    np.testing.assert_allclose(net.params[1].data, b1 - (0.9 * vb1 + 0.2 * gb), rtol=1e-14)
    assert solver.iter == 2
    # worked numbers for one entry: w[0,0]: v1 = 0.1*(1+0.01) = 0.101; w1 = 0.899;
    # v2 = 0.9*0.101 + 0.1*(0 + 0.00899) = 0.091799; w2 = 0.807201
    assert net.params[0].data[0, 0] == pytest.approx(0.807201, abs=1e-12)


def test_gradient_clipping_scales_to_the_threshold():
    net = one_param_net(np.zeros((2, 2)), np.zeros(2))
    solver = SGDSolver(net, SolverConfig(base_lr=1.0, clip_gradients=1.0))
    net.params[0].grad[...] = [[3.0, 0.0], [0.0, 0.0]]
    net.params[1].grad[...] = [4.0, 0.0]  # global norm 5 -> scale 1/5; bias lr_mult 2
    solver.apply_update()
    np.testing.assert_allclose(net.params[0].data, [[-0.6, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(net.params[1].data, [-1.6, 0.0])


def test_solver_config_from_yaml_and_validation(tmp_path):
    path = tmp_path / "solver.yaml"
    path.write_text("base_lr: 0.05\nlr_policy: multistep\ngamma: 0.1\nstepvalue: [100, 200]\n"
                    "momentum: 0.9\nmax_iter: 300\n")
    cfg = SolverConfig.from_yaml(path)
    assert (cfg.base_lr, cfg.stepvalue, cfg.max_iter) == (0.05, (100, 200), 300)
    with pytest.raises(ValueError, match="base_rate"):
        SolverConfig.from_dict({"base_rate": 0.1})
    with pytest.raises(ValueError, match="lr_policy='cosine'"):
        SolverConfig(lr_policy="cosine")
    with pytest.raises(ValueError, match="stepsize"):
        SolverConfig(lr_policy="step")
    with pytest.raises(ValueError, match="momentum"):
        SolverConfig(momentum=1.5)


def test_snapshot_restores_params_history_and_iteration(tmp_path):
    net = one_param_net(np.ones((2, 2)), np.zeros(2))
    solver = SGDSolver(net, SolverConfig(base_lr=0.1, momentum=0.9))
    net.params[0].grad[...] = 1.0
    solver.apply_update()
    path = solver.snapshot(tmp_path / "s.npz", {"seed": 3})
    net2 = one_param_net(np.zeros((2, 2)), np.zeros(2))
    solver2 = SGDSolver(net2, SolverConfig(base_lr=0.1, momentum=0.9))
    assert solver2.restore(path) == {"seed": 3}
    assert solver2.iter == 1
    np.testing.assert_array_equal(net2.params[0].data, net.params[0].data)
    np.testing.assert_array_equal(solver2.history["ip/weight"], solver.history["ip/weight"])
    assert not list(tmp_path.glob("*.tmp*"))
