"""Every number of every CLI command has a range; a value outside it (or nan, inf, not a number)
is one line on stderr and exit code 2, before the command does anything."""

from __future__ import annotations

import subprocess
import sys

import pytest

from forkpath._cli import main

BATCH = ["batch", "flow.yaml"]
LABEL = ["router", "label", "--small", "fake/s", "--large", "fake/l", "--out", "labels.jsonl"]
CALIBRATE = ["router", "calibrate", "labels.jsonl"]
VERIFY = ["verify", "candidate.py"]

CASES = [
    (BATCH, "--limit", ["0", "-1", "x"]),
    (BATCH, "--offset", ["-1"]),
    (BATCH, "--concurrency", ["0", "1025"]),
    (BATCH, "--timeout", ["0", "-1", "nan", "inf"]),
    (BATCH, "--retries", ["-1", "21"]),
    (BATCH, "--max-calls", ["0"]),
    (BATCH, "--max-tokens", ["0"]),
    (BATCH, "--max-cost", ["0", "nan", "inf"]),
    (BATCH, "--max-seconds", ["0", "-5", "nan"]),
    (LABEL, "--max-tokens", ["0", "-3", "40000"]),
    (LABEL, "--line-tokens", ["0", "5000"]),
    (LABEL, "--window", ["0", "2000"]),
    (CALIBRATE, "--alpha", ["-0.1", "1.5", "nan"]),
    (CALIBRATE, "--rate", ["-0.1", "1.1"]),
    (CALIBRATE, "--recall", ["0", "1.1"]),
    (CALIBRATE, "--quality", ["-1", "2", "nan"]),
    (CALIBRATE, "--holdout", ["1", "-0.1", "inf"]),
    (CALIBRATE, "--seed", ["-1", str(2**32)]),
    (CALIBRATE, "--delta", ["0", "1", "nan"]),
    (VERIFY, "--timeout", ["0", "3601", "nan"]),
    (VERIFY, "--memory-mb", ["64", str(2**21)]),
]


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [(command, option, value) for command, option, values in CASES for value in values],
    ids=lambda x: " ".join(x[:2]) if isinstance(x, list) else str(x),
)
def test_a_number_out_of_range_is_one_line(
    command: list[str],
    option: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["forkpath", *command, f"{option}={value}"])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: Invalid value for '{option}'"), lines[0]
    assert "(see forkpath " in lines[0]  # where to read the accepted range


def test_usage_errors_through_the_installed_command_are_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "forkpath._cli", "batch", "flow.yaml", "--concurrency", "0", "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    )


def test_help_shows_the_ranges(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["forkpath", "batch", "--help"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for text in ("1<=x<=1024", "0<=x<=20", "x>0", "--max-calls", "--rerun-budget-stopped"):
        assert text in shown
