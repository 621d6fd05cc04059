"""varprop without its compiled extension: ``import varprop``, the mean-field theory and
``analyze`` run on numpy and scipy alone, and every call that needs the kernels raises
:class:`varprop.kernels.ExtensionMissingError` (an ImportError and a RuntimeError) whose
message says why the extension is missing and how to build it.

Each case runs in a fresh interpreter: one hides ``varprop._kernels`` from the import
system (``sys.modules[name] = None``), the others import a copy of the package that has
no compiled file at all, as a source checkout that was never built (or a wheel built
without it) would be."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _env import subprocess_env

import varprop

# Run in the child: the theory works, the kernels raise the clear error.
CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import varprop
    from varprop.kernels import ExtensionMissingError, extension_available

    out = {"file": varprop.__file__, "available": extension_available()}
    prof = varprop.analyze(varprop.mlp([32] * 5, "tanh"))
    out["z_var"] = prof.column("z_var").tolist()
    out["grad_var"] = prof.column("grad_var").tolist()
    g = varprop.gaussian_moments("gelu", [0.5, 2.0])
    out["theory"] = [list(map(float, g.e_phi2)), varprop.q_map("tanh", 1.0, 1.5, 0.1),
                     varprop.chi1("relu", 2.0, 0.0), varprop.fixed_point("tanh", 1.5, 0.05),
                     varprop.edge_of_chaos("tanh", 0.05)]
    x = np.ones((2, 3)); w = np.ones((3, 4))
    calls = {
        "dense_forward": lambda: varprop.dense_forward(x, w),
        "dense_backward": lambda: varprop.dense_backward(x, w, np.ones((2, 4)), np.ones((2, 4))),
        "activation_apply": lambda: varprop.activation_apply(x, "tanh"),
        "built_with_openmp": varprop.built_with_openmp,
        "measure": lambda: varprop.measure(varprop.mlp([8, 8], "relu"), batch=4, seeds=1),
    }
    out["errors"] = {}
    for name, call in calls.items():
        try:
            call()
        except ExtensionMissingError as e:
            out["errors"][name] = [isinstance(e, ImportError), isinstance(e, RuntimeError),
                                   str(e)]
        else:
            out["errors"][name] = None
    print(json.dumps(out, default=float))
""")

HIDE = "import sys; sys.modules['varprop._kernels'] = None\n"
# An editable install of this checkout adds an import hook that would resolve
# varprop._kernels in the checkout whichever varprop was imported; the copies below
# stand for a tree with no install, so the child drops such hooks first.
NO_EDITABLE_HOOK = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
                    "if '__editable__' not in str(getattr(f, '__module__', ''))]\n")


def _run(code: str, env: dict[str, str], cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(out: dict, *phrases: str) -> None:
    assert out["available"] is False
    # the theory ran, and gave what this process (with the extension) gives
    prof = varprop.analyze(varprop.mlp([32] * 5, "tanh"))
    np.testing.assert_array_equal(out["z_var"], prof.column("z_var"))
    np.testing.assert_array_equal(out["grad_var"], prof.column("grad_var"))
    g = varprop.gaussian_moments("gelu", [0.5, 2.0])
    np.testing.assert_array_equal(out["theory"][0], np.asarray(g.e_phi2, float))
    assert out["theory"][1] == varprop.q_map("tanh", 1.0, 1.5, 0.1)
    assert out["theory"][2] == varprop.chi1("relu", 2.0, 0.0)
    for name, err in out["errors"].items():
        assert err is not None, f"{name} ran without the compiled extension"
        is_import, is_runtime, message = err
        assert is_import and is_runtime, name
        assert "compiled extension varprop._kernels" in message, message
        for phrase in phrases:
            assert phrase in message, (name, phrase, message)


def test_hidden_extension_leaves_the_theory_and_names_the_cause(tmp_path):
    out = _run(HIDE + CHILD, subprocess_env(), tmp_path)
    assert Path(out["file"]).resolve() == Path(varprop.__file__).resolve()
    # the .so exists here but cannot be imported: the message says so and how to rebuild
    _check(out, "failed to load", "pip install -e .")


def _copy_package(dest: Path, keep_pyx: bool) -> Path:
    """A copy of the varprop package without any compiled file (nor the .pyx)."""
    src = Path(varprop.__file__).resolve().parent
    skip = ["*.so", "*.pyd", "*.c", "__pycache__"] + ([] if keep_pyx else ["*.pyx"])
    shutil.copytree(src, dest / "varprop", ignore=shutil.ignore_patterns(*skip))
    return dest


@pytest.mark.parametrize("keep_pyx", [True, False], ids=["source-tree", "not-built"])
def test_package_without_a_build_says_how_to_build(tmp_path, keep_pyx):
    root = _copy_package(tmp_path / "tree", keep_pyx)
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = _run(NO_EDITABLE_HOOK + CHILD, env, tmp_path)
    assert Path(out["file"]).resolve().is_relative_to(root.resolve()), out["file"]
    if keep_pyx:  # a checkout with _kernels.pyx and no _kernels*.so: build it in place
        _check(out, "source tree", str(root), "holds no compiled extension",
               "pip install -e .")
    else:
        _check(out, "not built", "pip install .")
