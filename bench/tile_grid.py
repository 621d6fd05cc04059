"""Work (CPU time) of the fused forward on one thread for several tile grids, over one bare
1-thread sgemm: the measurement behind varprop.kernels.forward_tiles (docs/kernels.md,
"Tile grid"). CPU time on one thread does not count other processes' time, so it holds up
on a loaded machine better than wall time does.

Usage:  python bench/tile_grid.py [--blocks 7] [--act relu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))

from _cases import bare_gemm, layer_data  # noqa: E402
from varprop import kernels  # noqa: E402
from varprop._blas import single_threaded_blas  # noqa: E402
from varprop.activations import get_activation  # noqa: E402

GRIDS = {"rule": None, "256x2048": (256, 2048), "512x256": (512, 256),
         "256x512": (256, 512), "256x256": (256, 256), "128x256": (128, 256),
         "128x128": (128, 128)}


def fused(x, w, b, act, tile_rows: int, tile_cols: int) -> None:
    """One forward through the raw kernel with an explicit grid, on one thread."""
    z = np.empty((x.shape[0], w.shape[1]), x.dtype)
    a = np.empty_like(z)
    p0, p1 = act.kernel_params
    with single_threaded_blas():
        kernels._extension().forward(x, w, b, z, a, np.empty((0, 0, 0)), act.kernel_id,
                                     p0, p1, tile_rows, tile_cols, 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--act", default="relu")
    args = parser.parse_args(argv)
    act = get_activation(args.act)
    for batch, width in [(256, 1024), (1024, 4096)]:
        x, w, b = layer_data(batch, width, np.float32)
        reps = 6 if width <= 1024 else 1
        ratios: dict[str, list[float]] = {k: [] for k in GRIDS}
        for _ in range(args.blocks):
            with threadpool_limits(1):
                bare_gemm(x, w)
                t0 = time.process_time()
                for _ in range(reps):
                    bare_gemm(x, w)
                t_gemm = (time.process_time() - t0) / reps
            for name, grid in GRIDS.items():
                tr, tc = kernels.forward_tiles(batch, width) if grid is None else grid
                fused(x, w, b, act, tr, min(tc, width))
                t0 = time.process_time()
                for _ in range(reps):
                    fused(x, w, b, act, tr, min(tc, width))
                ratios[name].append((time.process_time() - t0) / reps / t_gemm)
        cells = " ".join(f"{k}={statistics.median(v):.3f}" for k, v in ratios.items())
        print(f"{batch}x{width}x{width} {args.act} (rule: "
              f"{kernels.forward_tiles(batch, width)}): {cells}", flush=True)


if __name__ == "__main__":
    main()
