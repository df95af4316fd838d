"""scripts/bench_e2e.py (suites e2e and onnx of scripts/bench.py): the stage clock charges each
stage its own time only, and the e2e suite finds every function it times in the generation code
(a refactor that moves one shows up here, not as time silently moved to `other`)."""
import re



class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_stage_clock_charges_a_nested_stage_to_itself_only(bench_e2e, monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(bench_e2e.time, "perf_counter", fake)
    clock = bench_e2e.StageClock()

    def network():
        fake.now += 3.0

    def driver():
        fake.now += 1.0
        clock.timed("networks", network)()
        fake.now += 0.5

    def frames():
        for _ in range(2):
            fake.now += 0.25
            yield 1

    clock.timed("drivers", driver)()
    for _ in clock.timed_generator("decode", frames)():
        fake.now += 10.0  # the consumer's time between steps is not the generator's
    assert dict(clock.totals) == {"drivers": 1.5, "networks": 3.0, "decode": 0.5}


def test_e2e_times_every_stage_of_a_real_generation(bench, capsys):
    assert bench.main(["e2e", "--tiny", "--seconds", "1", "--engines", "torch", "--video-height", "360"]) == 0
    out = capsys.readouterr().out
    assert "not timed" not in out
    rows = re.findall(r"^\| (.+?) \| torch \| (\d+) \| (.+) \|$", out, re.M)
    assert [case for case, _, _ in rows] == ["image source, audio-driven, preset, paste-back",
                                             "360p video dubbed, paste-back"]
    for _, frames, numbers in rows:
        values = [float(v) for v in numbers.split(" | ")]
        *stages, other, total, _, _ = values
        assert int(frames) == 25
        assert abs(sum(stages) + other - total) < 0.15  # stages + other make up the wall time (rounded)
        assert values[3] > 0  # networks
