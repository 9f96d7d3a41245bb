"""The device calibration behind ``marginalize="auto"``'s budget (`lmmhmc.calibration`,
`lmmhmc.plan.device_budget`)."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import numpy as np
import pytest

from lmmhmc import calibration, plan


def test_the_timed_kernel_is_the_dense_log_determinant_and_quadratic_form():
    """Value and gradient against dense algebra:
    d/dS (log det S + b'S^-1 b) = S^-1 - S^-1 b b'S^-1."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 6))
    s, b = a @ a.T + 6 * np.eye(6), rng.standard_normal(6)
    value, grad = jax.value_and_grad(calibration._dense)(s, b)
    inv = np.linalg.inv(s)
    assert float(value) == pytest.approx(np.linalg.slogdet(s)[1] + b @ inv @ b, rel=1e-12)
    np.testing.assert_allclose(grad, inv - np.outer(inv @ b, inv @ b), atol=1e-12)


def test_remembered_stores_the_calibration_and_reads_it_back(tmp_path, monkeypatch):
    calls = []

    def measure():
        calls.append(1)
        return {"cpu_s": 1e-3, "device_s": {128: 2e-4}}

    monkeypatch.setattr(calibration, "_path", lambda: tmp_path / calibration.FILE)
    gpu = SimpleNamespace(platform="gpu", device_kind="test")
    first = calibration.remembered(gpu, "v", measure)
    again = calibration.remembered(gpu, "v", measure)
    assert len(calls) == 1 and first == again == {"cpu_s": 1e-3, "device_s": {"128": 2e-4}}
    calibration.remembered(SimpleNamespace(platform="gpu", device_kind="other"), "v", measure)
    assert len(calls) == 2  # another kind of device: measured
    calibration.remembered(gpu, "w", measure)
    assert len(calls) == 3  # another calibration (sizes) of the same device: measured
    monkeypatch.setattr(calibration, "_path", lambda: None)  # cache off: always measured
    calibration.remembered(gpu, "v", measure)
    assert len(calls) == 4


def test_dense_seconds_times_every_size_up_to_the_first_over_the_limit():
    cpu = jax.devices("cpu")[0]
    seconds = calibration.dense_seconds([4, 8], cpu)
    assert sorted(seconds) == [4, 8] and all(0 < t < 1 for t in seconds.values())
    assert list(calibration.dense_seconds([4, 8, 16], cpu, limit=0.0)) == [4]


def test_cpu_budget_is_the_fixed_budget_without_measuring(monkeypatch):
    monkeypatch.setattr(calibration, "dense_seconds", lambda *a, **k: pytest.fail("measured"))
    assert plan.device_budget(jax.devices("cpu")[0]) == plan.BUDGET


@pytest.mark.parametrize(("device_ms", "expected"), [
    # the H200 of benchmarks/results/device.json: 512 is the largest within the CPU's 1.1 ms,
    # and its budget there was 403,439,616 = 3 (512^2 + 512^3)
    ({128: 0.33, 256: 0.50, 512: 0.90, 1024: 1.62, 2048: 3.73, 4096: 11.2}, 403_439_616),
    # a device slower than the CPU at every size: the CPU budget, not less
    ({128: 2.0, 256: 3.0, 512: 5.0, 1024: 9.0, 2048: 20.0, 4096: 60.0}, 1e7),
])
def test_accelerator_budget_is_the_largest_system_as_fast_as_the_cpu_budget(
        monkeypatch, device_ms, expected):
    gpu = SimpleNamespace(platform="gpu", device_kind="test")
    reference = 150  # 3 (150^2 + 150^3) = 1.02e7 >= 1e7 > 3 (149^2 + 149^3)

    def timed(sizes, device, limit=None):
        if device is gpu:
            assert limit == 1.1e-3 and list(sizes) == list(plan.DEVICE_SIZES)
            return {n: 1e-3 * device_ms[n] for n in sizes}
        assert device.platform == "cpu" and list(sizes) == [reference]
        return {reference: 1.1e-3}

    monkeypatch.setattr(calibration, "dense_seconds", timed)
    monkeypatch.setattr(calibration, "_path", lambda: None)
    budget = plan.device_budget(gpu)
    assert budget == expected
