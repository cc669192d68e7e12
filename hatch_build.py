"""Hatchling build hook: builds libevloop.so with cargo and puts it in the
wheel as evloop/libevloop.so, where the loader looks first.

Nothing in the package is compiled against Python (it loads the library with
ctypes), so the wheel fits every Python 3 on the platform: it is tagged
py3-none-<platform>. CARGO_TARGET_DIR is honoured, so a build can reuse a
target directory that already holds the library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any, Dict

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CargoBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: Dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        library = build_library(Path(self.root))
        if version == "editable":
            # The package stays in the checkout, whose target/release the
            # loader finds: nothing to copy.
            return
        build_data["force_include"][str(library)] = "evloop/libevloop.so"
        build_data["pure_python"] = False
        build_data["tag"] = f"py3-none-{platform_tag()}"


def build_library(root: Path) -> Path:
    """`cargo build --release --lib` in `root`; the path of libevloop.so."""
    cargo = os.environ.get("CARGO") or shutil.which("cargo")
    if not cargo:
        raise RuntimeError(
            "building evloop needs cargo (the Rust toolchain) on PATH: it compiles libevloop.so from src/"
        )
    subprocess.run([cargo, "build", "--release", "--lib"], cwd=root, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    library = (root / target / "release" / "libevloop.so").resolve()
    if not library.is_file():
        raise RuntimeError(f"cargo build succeeded but {library} does not exist")
    return library


def platform_tag() -> str:
    """linux_x86_64 and the like, as wheel tags spell sysconfig's platform."""
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")
