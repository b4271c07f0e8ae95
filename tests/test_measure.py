"""The timing protocol on a fake clock: no real time is measured here."""

import pytest

from segbench.measure import NOISY_IQR_RATIO, Protocol, measure, summarize


class FakeClock:
    """A clock that only moves when the fake model runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_model(clock: FakeClock, latencies):
    it = iter(latencies)
    calls = []

    def call():
        clock.now += next(it)
        calls.append(clock.now)
    return call, calls


def test_constant_latency_gives_exact_statistics():
    clock = FakeClock()
    # binary fractions keep the fake clock exact
    call, calls = fake_model(clock, [2.0] + [0.125] * 10_000)  # slow first call (compile)
    timing = measure(call, Protocol(), batch=2, clock=clock)
    assert timing.first_call_s == pytest.approx(2.0)
    # warm-up: at least 3 calls and 0.5 s -> 4 calls of 0.125 s
    assert timing.warmup_calls == 4
    # 5 repeats, each >= 1 s and >= 5 calls -> 8 calls of 0.125 s each
    assert len(timing.repeat_throughputs) == 5
    assert len(timing.latencies_ms) == 40
    assert timing.stats["throughput"] == pytest.approx(2 / 0.125)  # batch 2 per 0.125 s
    assert timing.stats["throughput_iqr"] == pytest.approx(0.0)
    assert timing.stats["latency_p50_ms"] == pytest.approx(125.0)
    assert not timing.noisy
    assert len(calls) == 1 + 4 + 40


def test_first_call_never_enters_the_statistics():
    clock = FakeClock()
    call, _ = fake_model(clock, [100.0] + [0.5] * 1000)
    timing = measure(call, Protocol(repeats=3), clock=clock)
    assert max(timing.latencies_ms) == pytest.approx(500.0)
    assert timing.stats["throughput"] == pytest.approx(2.0)


def test_minimum_calls_win_over_minimum_time_for_slow_models():
    clock = FakeClock()
    call, _ = fake_model(clock, [3.0] * 1000)  # every call longer than a repeat's 1 s
    timing = measure(call, Protocol(), clock=clock)
    assert timing.warmup_calls == 3
    assert len(timing.latencies_ms) == 5 * 5


def test_spread_between_repeats_sets_the_noisy_flag():
    clock = FakeClock()
    # repeat r runs at latency 0.1*(1+r/2): throughputs 10, 6.67, 5, 4, 3.33
    lat = [0.01] * 100  # first call + warm-up
    for r in range(5):
        lat += [0.1 * (1 + r / 2)] * 10
    call, _ = fake_model(clock, [0.01] + lat)
    timing = measure(call, Protocol(warmup_calls=3, warmup_seconds=0.0), clock=clock)
    tps = timing.repeat_throughputs
    assert timing.stats["throughput"] == pytest.approx(sorted(tps)[2])
    assert timing.stats["iqr_ratio"] > NOISY_IQR_RATIO
    assert timing.noisy


def test_summarize_percentiles_and_iqr():
    stats = summarize([10.0, 11.0, 12.0, 13.0, 14.0], [float(i) for i in range(1, 101)])
    assert stats["throughput"] == 12.0
    assert stats["throughput_iqr"] == pytest.approx(2.0)  # 13 - 11
    assert stats["latency_p50_ms"] == pytest.approx(50.5)
    assert stats["latency_p99_ms"] == pytest.approx(99.01)
    assert stats["iqr_ratio"] == pytest.approx(2.0 / 12.0)


def test_summarize_refuses_empty_input():
    with pytest.raises(ValueError):
        summarize([], [])


def test_smoke_protocol_is_labelled_quick():
    assert Protocol.smoke().quick and not Protocol.full().quick
    assert Protocol.full().to_dict()["repeats"] == 5
