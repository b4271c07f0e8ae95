"""The stream scheduler: configurations for any CPU count, distinct inputs per stream, summed
throughput on a fake clock (no timing is asserted, only arithmetic on fake time)."""

import threading

import pytest
import torch

from segbench import measure, runtimes, streams
from segbench.measure import Protocol
from segbench.models import ModelSpec, build_model


class ThreadClock:
    """A fake clock per thread: each stream's calls advance its own time by a fixed step, so
    its rate is known exactly whatever the thread scheduling."""

    def __init__(self):
        self.local = threading.local()

    def __call__(self):
        return getattr(self.local, "now", 0.0)

    def advance(self, seconds):
        self.local.now = self() + seconds


PROTOCOL = Protocol(warmup_calls=2, warmup_seconds=0.0, repeats=3, repeat_seconds=1.0,
                    repeat_calls=2)


def test_throughput_is_the_sum_of_the_streams_rates():
    clock = ThreadClock()
    steps = [0.125, 0.25, 0.5]  # 8, 4 and 2 calls per second (exact in binary)

    def make(step):
        def call():
            clock.advance(step)
        return call

    timing = measure.measure_concurrent([make(s) for s in steps], PROTOCOL, batch=2,
                                        clock=clock)
    assert timing.repeat_throughputs == pytest.approx([2 * 14.0] * 3)
    assert timing.stats["throughput"] == pytest.approx(28.0)
    # counted calls: >= 1 s and >= 2 calls per repeat and stream: 8 + 4 + 2 per repeat
    assert len(timing.latencies_ms) == 3 * (8 + 4 + 2)
    assert sorted(set(round(ms) for ms in timing.latencies_ms)) == [125, 250, 500]


def test_a_failing_stream_raises_instead_of_hanging():
    clock = ThreadClock()

    def ok():
        clock.advance(0.1)

    def bad():
        raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError, match="stream broke"):
        measure.measure_concurrent([ok, bad, ok], PROTOCOL, clock=clock)


def test_streams_get_distinct_inputs_and_their_own_instance():
    model = build_model(ModelSpec("testing", "tiny", 2))
    example = torch.zeros(1, 3, 32, 32)
    prepared = [runtimes.get("eager").prepare(model, example, 1) for _ in range(3)]
    seen = [[] for _ in prepared]

    def spy(s, call):
        def wrapped(x):
            seen[s].append(x)
            return call(x)
        return wrapped

    inputs = streams.stream_inputs((1, 3, 32, 32), 3)
    calls = streams.stream_calls([spy(s, p.call) for s, p in enumerate(prepared)], inputs)
    clock = ThreadClock()
    timed = [lambda c=c: (c(), clock.advance(0.25)) for c in calls]
    timing = measure.measure_concurrent(timed, PROTOCOL, clock=clock)
    assert timing.stats["throughput"] == pytest.approx(3 * 4.0)
    for s in range(3):
        assert seen[s] and all(x is inputs[s] for x in seen[s])
    assert not torch.equal(inputs[0], inputs[1]) and not torch.equal(inputs[1], inputs[2])


def test_prepare_and_measure_runs_real_streams():
    model = build_model(ModelSpec("testing", "tiny", 2))
    example = torch.randn(1, 3, 32, 32)
    quick = Protocol.smoke(1)
    measured, output = streams.prepare_and_measure(
        runtimes.get("eager"), model, example, threads=1, streams=2, options={},
        protocol=quick, batch=1, want_output=True)
    assert measured["info"]["streams"] == 2 and measured["timing"]["calls"] >= 4
    assert output.shape == (1, 2, 32, 32)


@pytest.mark.parametrize("cpus, latency, throughput", [
    (1, [1], []),
    (2, [1, 2], [(2, 1)]),
    (12, [1, 2, 4, 8, 12], [(12, 1), (6, 2), (3, 4)]),
    (64, [1, 2, 4, 8, 16, 32, 64], [(64, 1), (32, 2), (16, 4), (8, 8), (4, 16), (2, 32)]),
])
def test_configs_scale_from_one_cpu_to_a_server(cpus, latency, throughput):
    configs = streams.configs(cpus)
    assert [c.threads for c in configs if c.mode == "latency"] == latency
    assert [(c.streams, c.threads) for c in configs if c.mode == "throughput"] == throughput
    assert all(c.total_threads <= cpus for c in configs)


def test_scaling_dry_run_plans_a_64_cpu_server(capsys, tmp_path):
    from conftest import load_benchmark

    from segbench import bench

    scaling = load_benchmark("scaling")
    code = bench.main(scaling, ["--out", str(tmp_path), "--dry-run", "--cpus", "64",
                                "--models", "resnet18", "--runtimes", "ort-fp32"])
    out = capsys.readouterr().out
    assert code == 0
    assert "13 cells" in out  # 7 latency-mode thread counts + 6 stream splits
    assert "streams=64" in out and "streams=2" in out


def test_scaling_rejects_zero_cpus(capsys, tmp_path):
    from conftest import load_benchmark

    from segbench import bench

    code = bench.main(load_benchmark("scaling"), ["--out", str(tmp_path), "--cpus", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--cpus" in err and err.count("\n") == 1
