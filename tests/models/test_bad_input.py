"""Bad input to the model layer: one clear line naming the thing, before any call."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from forkpath import ModelNotFoundError, UnknownNameError
from forkpath.models import _local, get_model


def test_unknown_model_names() -> None:
    with pytest.raises(UnknownNameError, match="unknown model 'no-such-provider-model'"):
        get_model("no-such-provider-model")
    with pytest.raises(UnknownNameError, match=r"unknown local model 'local/smollm3'.*local/smollm2-135m"):
        get_model("local/smollm3")


def test_missing_gguf_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFoundError, match=f"llamacpp/{missing}: GGUF file not found: {missing}"):
        get_model(f"llamacpp/{missing}")


def test_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model at all")
    with pytest.raises(ModelNotFoundError, match="cannot load GGUF file"):
        get_model(f"llamacpp/{bogus}")


def test_assembly_checks_the_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORKPATH_HOME", str(tmp_path / "home"))
    chunks = [tmp_path / "part01.bin", tmp_path / "part02.bin"]
    chunks[0].write_bytes(b"hello ")
    chunks[1].write_bytes(b"world")
    good = hashlib.sha256(b"hello world").hexdigest()
    model = _local.BundledModel("toy", "toy", ("toy-part1",), "0" * 64, "toy", 1)
    with pytest.raises(
        ModelNotFoundError, match=f"local/toy: hash mismatch .*expected sha256 {'0' * 64}, got {good}"
    ):
        _local.assemble(model, chunks)
    assert not _local.assembled_path(model).exists()
    assert not list((tmp_path / "home" / "models").glob("*"))  # nothing half-written is left
    ok = _local.BundledModel("toy", "toy", ("toy-part1",), good, "toy", 1)
    assert _local.assemble(ok, chunks).read_bytes() == b"hello world"


def test_pull_hashes_an_assembled_file_again_and_replaces_a_corrupt_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORKPATH_HOME", str(tmp_path / "home"))
    chunks = [tmp_path / "part01.bin", tmp_path / "part02.bin"]
    chunks[0].write_bytes(b"hello ")
    chunks[1].write_bytes(b"world")
    model = _local.BundledModel(
        "toy", "toy", ("toy-part1",), hashlib.sha256(b"hello world").hexdigest(), "toy", 1
    )
    monkeypatch.setitem(_local.BUNDLED, "toy", model)
    monkeypatch.setattr(_local, "missing_packages", lambda m: [])  # as if pip had installed them
    monkeypatch.setattr(_local, "_package_files", lambda package, pattern: chunks)
    path = _local.pull("toy")
    assert path.read_bytes() == b"hello world"
    path.write_bytes(b"hello w0rld")  # corrupted on disk after assembly
    assert _local.pull("toy").read_bytes() == b"hello world"


def test_chunked_model_without_its_packages_says_how_to_pull(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FORKPATH_HOME", str(tmp_path))
    fake = _local.BundledModel("ghost", "ghost", ("forkpath-no-such-package-part1",), "0" * 64, "x", 1)
    monkeypatch.setitem(_local.BUNDLED, "ghost", fake)
    with pytest.raises(
        ModelNotFoundError, match="local/ghost: not present; run `forkpath models pull ghost`"
    ):
        get_model("local/ghost")


def test_cli_reports_bad_model_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "forkpath._cli", "models", "pull", "not-a-model"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "unknown local model 'local/not-a-model'" in proc.stderr
