"""Scenario files for the simulated hardware."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruche.sim.ld2410 import Garbage, Seated, Truncated
from ruche.sim.scenario import ScenarioError, load_scenario, parse_step

SHIPPED = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios"


class TestSteps:
    """`[kind, number]` becomes the simulator's step."""

    def test_kinds(self):
        assert parse_step(["seated", 60]) == Seated(60.0)
        assert parse_step(["garbage", 64]) == Garbage(nbytes=64)
        assert parse_step(["truncated"]) == Truncated()

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (["dancing", 3], "unknown step 'dancing'"),
            (["seated"], "takes one number"),
            (["seated", "long"], "takes one number"),
            (["seated", -1], "cannot last"),
            ([], "a step is"),
        ],
    )
    def test_refused(self, raw, message):
        with pytest.raises(ValueError, match=message):
            parse_step(raw)


class TestFiles:
    """Scenario files load, or say exactly what is wrong."""

    @pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.toml")), ids=lambda p: p.name)
    def test_shipped_scenarios_load(self, path):
        scenario = load_scenario(path)
        assert scenario.duration > 0

    def test_errors_name_the_entry(self, tmp_path):
        path = tmp_path / "bad.toml"
        path.write_text(
            '[[radars]]\ndesk = "d"\nlink = "x"\nsteps = [["sat", 3]]\n'
            '[[badges]]\ndevice = "usb"\ntaps = [[1, "0102"]]\n'
        )
        with pytest.raises(ScenarioError) as info:
            load_scenario(path)
        text = str(info.value)
        assert "radars.0.steps" in text
        assert "unknown step 'sat'" in text
        assert "badges.0.device" in text
        assert "must be 8 bytes" in text

    def test_missing_file(self, tmp_path):
        with pytest.raises(ScenarioError, match="no such scenario file"):
            load_scenario(tmp_path / "nope.toml")
