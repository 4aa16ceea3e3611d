"""`make test` runs the suite as two pytest sessions (scripts/run_tests.py): every test in exactly one."""

from __future__ import annotations

import importlib.util

import pytest

from harness import REPO

spec = importlib.util.spec_from_file_location("run_tests", REPO / "scripts" / "run_tests.py")
run_tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_tests)


def test_lane_two_is_everything_lane_one_is_not(monkeypatch):
    monkeypatch.delenv("MIXTRAIN_TEST_LANES", raising=False)
    one, two = run_tests.lanes(["-x"])
    assert one == [*run_tests.LANE_1, "-x"]
    assert two == ["tests", *(f"--ignore={p}" for p in run_tests.LANE_1), "-x"]
    for folder in run_tests.LANE_1:  # a renamed folder would otherwise run in both lanes, or in none
        assert (REPO / folder).is_dir() and folder.startswith("tests/")


@pytest.mark.parametrize("args", [["tests/unit/test_run_tests.py"], ["tests/unit/test_run_tests.py::test_x", "-q"]])
def test_named_tests_run_once_in_one_session(monkeypatch, args):
    monkeypatch.delenv("MIXTRAIN_TEST_LANES", raising=False)
    assert run_tests.lanes(args) == [args]


def test_an_option_value_is_no_test_path(monkeypatch):
    monkeypatch.delenv("MIXTRAIN_TEST_LANES", raising=False)
    assert len(run_tests.lanes(["-k", "tests"])) == 2  # "tests" is a folder, but here it is -k's word


def test_one_lane_on_request(monkeypatch):
    monkeypatch.setenv("MIXTRAIN_TEST_LANES", "1")
    assert run_tests.lanes(["-x"]) == [["tests", "-x"]]


@pytest.mark.parametrize(
    "codes, status", [([0, 0], 0), ([0, 1], 1), ([2, 0], 2), ([5, 0], 0), ([0, 5], 0), ([5, 5], 5), ([5, 1], 1)]
)
def test_exit_status_of_the_lanes(codes, status):
    assert run_tests.combined(codes) == status
