"""Helpers for the tests that run varprop in a subprocess."""

from __future__ import annotations

import os


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a ``python -m varprop`` subprocess that imports the same
    varprop as this process: the installed package (a wheel in CI, the source tree in
    an editable install), never a source tree without its compiled extension."""
    from pathlib import Path

    import varprop

    home = str(Path(varprop.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (home, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
