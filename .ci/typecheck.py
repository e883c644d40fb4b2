"""Run mypy over forkpath as it installs: the role folders mapped under forkpath/.

mypy cannot follow setuptools' editable-install finder, which maps forkpath.flows to flows/
and so on. This builds .mypy-tree/forkpath/ out of symlinks laid as the installed package is
laid, and checks that; reported paths name the real files after the symlink prefix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("flows", "strategies", "routers", "verifiers", "store")


def build_tree() -> Path:
    tree = ROOT / ".mypy-tree"
    shutil.rmtree(tree, ignore_errors=True)
    package = tree / "forkpath"
    package.mkdir(parents=True)
    for entry in (ROOT / "forkpath").iterdir():
        if entry.name != "__pycache__":
            os.symlink(entry, package / entry.name)
    for role in ROLES:
        os.symlink(ROOT / role, package / role)
    return tree


def main() -> int:
    tree = build_tree()
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "forkpath"]
    return subprocess.call(cmd, cwd=tree)


if __name__ == "__main__":
    sys.exit(main())
