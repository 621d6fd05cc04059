"""Build of varprop's compiled core: Cython + C kernels, with OpenMP when the compiler has it.

Environment variables:
    VARPROP_REQUIRE_OPENMP=1  fail the build when the compiler cannot build OpenMP code
                              (CI sets it); otherwise such a build is serial, with a warning.
    VARPROP_NATIVE=1          compile for this machine (-march=native). Off by default: the
                              default binaries are portable; the activation loops are still
                              compiled for baseline, AVX2/FMA and AVX-512 on x86-64, one picked
                              at load time (csrc/vp_activations.c; VARPROP_ISA forces one).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d", n > 0 && omp_get_max_threads() > 0);
        return 0;
    }
    """
)


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _openmp_flags(compiler):
    """Flags that build and link OpenMP code with this compiler, or None if it cannot."""
    if compiler.compiler_type == "msvc":
        candidates = [["/openmp"]]
    elif sys.platform == "darwin":
        candidates = [["-Xpreprocessor", "-fopenmp", "-lomp"], ["-fopenmp"]]
    else:
        candidates = [["-fopenmp"]]
    for flags in candidates:
        tmp = tempfile.mkdtemp(prefix="varprop-omp-")
        try:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(_OPENMP_PROBE)
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            exe = os.path.join(tmp, "probe")
            compiler.link_executable(objs, exe, extra_postargs=flags)
            out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
            if out.returncode == 0 and out.stdout.strip() == "1":
                return flags
        except Exception:  # noqa: BLE001 - any failure means "no OpenMP with these flags"
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return None


def _require_compiler(compiler):
    """Stop with one clear message when the C compiler the build would call is missing
    (instead of an OpenMP warning followed by a compiler traceback)."""
    if compiler.compiler_type == "msvc":
        return
    command = getattr(compiler, "compiler_so", None) or getattr(compiler, "compiler", None)
    program = command[0] if command else os.environ.get("CC", "cc")
    if shutil.which(program) is None:
        raise RuntimeError(
            f"varprop: building its kernels needs a C compiler, and {program!r} was not "
            "found. Install one (Debian/Ubuntu: apt install gcc; Fedora: dnf install gcc; "
            "macOS: xcode-select --install) or set CC to it, then install varprop again.")


class BuildExtWithOpenMP(build_ext):
    """build_ext that probes for OpenMP and passes its flags at compile and link time."""

    def build_extensions(self):
        _require_compiler(self.compiler)
        flags = _openmp_flags(self.compiler)
        if flags is None:
            message = (
                "varprop: the C compiler cannot build OpenMP code; the kernels will run "
                "on one thread."
            )
            if _env_flag("VARPROP_REQUIRE_OPENMP"):
                raise RuntimeError(message + " VARPROP_REQUIRE_OPENMP=1 makes this fatal.")
            warnings.warn(message, stacklevel=1)
            flags = []
            if self.compiler.compiler_type != "msvc":
                flags_compile = ["-fopenmp-simd"]
            else:
                flags_compile = []
        else:
            flags_compile = list(flags)
        extra = []
        if self.compiler.compiler_type != "msvc":
            # No FP trap flags are read anywhere: -fno-trapping-math lets the compiler
            # if-convert the branch-free activation math into vector selects.
            extra = ["-O3", "-fno-trapping-math", "-fno-math-errno"]
            if _env_flag("VARPROP_NATIVE"):
                extra.append("-march=native")
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + extra + flags_compile
            ext.extra_link_args = list(ext.extra_link_args or []) + flags
        super().build_extensions()


extensions = [
    Extension(
        "varprop._kernels",
        sources=["varprop/_kernels.pyx", "csrc/vp_activations.c"],
        include_dirs=["csrc"],
        depends=["varprop/_kernels_misc.pxi", "varprop/_kernels_backward.pxi",
                 "csrc/vp_activations.h", "csrc/vp_math.h",
                 "csrc/vp_erfc_coeffs.h"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(
        "varprop._conv",
        # the activation epilogues are compiled in here too: the fused convolution runs
        # them on each tile, as varprop._kernels does on a dense layer's tiles
        sources=["varprop/_conv.pyx", "csrc/vp_conv.c", "csrc/vp_activations.c"],
        include_dirs=["csrc"],
        depends=["csrc/vp_conv.h", "csrc/vp_activations.h", "csrc/vp_math.h",
                 "csrc/vp_erfc_coeffs.h"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(
        "varprop._rnn",
        # the recurrent step runs the dense kernels' activation epilogue on each batch
        # tile, so the epilogues are compiled in here too, as for varprop._conv
        sources=["varprop/_rnn.pyx", "csrc/vp_rnn.c", "csrc/vp_activations.c"],
        include_dirs=["csrc"],
        depends=["csrc/vp_rnn.h", "csrc/vp_activations.h", "csrc/vp_math.h",
                 "csrc/vp_erfc_coeffs.h"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(
        "varprop._gated",
        # the LSTM and GRU steps run the dense kernels' sigmoid and tanh epilogues on each
        # batch tile, so the epilogues are compiled in here too, as for varprop._rnn
        sources=["varprop/_gated.pyx", "csrc/vp_gated.c", "csrc/vp_activations.c"],
        include_dirs=["csrc"],
        depends=["csrc/vp_gated.h", "csrc/vp_rnn.h", "csrc/vp_activations.h",
                 "csrc/vp_math.h", "csrc/vp_erfc_coeffs.h"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
