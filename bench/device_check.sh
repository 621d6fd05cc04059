#!/usr/bin/env bash
# One script for a many-core machine (issue 17; about 5 minutes on 16 cores): build the
# extension in place, run the bitwise thread-count tests (1, 2, 3, 8, 16 threads) and the
# instruction-set tests (every level the CPU runs, AVX-512 included where present), then
# print bench/ratios.py at 2 and at 16 threads.
#
# Usage:  bash bench/device_check.sh [ratios blocks, default 4]
set -u
cd "$(dirname "$0")/.."
blocks="${1:-4}"
start=$(date +%s)
stamp() { echo "--- $1 ($(( $(date +%s) - start )) s)"; }

stamp "machine"
nproc
lscpu | grep -E "Model name|^Flags" | sed -E 's/(Flags:).*/\1 '"$(grep -o -w -E 'avx2|fma|avx512f|avx512dq|avx512bw|avx512vl' /proc/cpuinfo | sort -u | tr '\n' ' ')"'/'

stamp "build"
python setup.py build_ext --inplace -q -j 3 >/tmp/varprop_build.log 2>&1 \
    || { tail -30 /tmp/varprop_build.log; echo "BUILD FAILED"; exit 1; }
python -c "import varprop._kernels as k; print('activation loops:', k.isa(), 'available:', k.isa_available(), 'openmp:', k.built_with_openmp())"

stamp "tests: ISA levels, bitwise thread counts"
timeout 240 python -m pytest -q -p no:randomly -p no:cacheprovider tests/test_isa.py \
    tests/test_threads.py \
    "tests/test_kernels.py::test_bitwise_identical_for_any_thread_count" \
    "tests/test_kernels.py::test_fine_grids_match_the_twin_and_are_thread_independent" \
    "tests/test_kernels.py::test_tile_grid_offers_cores_work_with_large_tiles" \
    "tests/test_kernels.py::test_forward_matches_numpy_twin" 2>&1 | tail -15

for n in 2 16; do
    stamp "bench/ratios.py --threads $n"
    timeout 200 python bench/ratios.py --threads "$n" --blocks "$blocks"
done
stamp "done"
