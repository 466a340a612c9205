#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make check: proves that the conformance runs of the GPU kernel on OpenCL
# (conformance-opencl-gpu32/64.sh) exercise that kernel and its async
# copies. With PKV_EMU_LATE_WAIT every wait retires one commit group too
# few; the poisoned copies then reach the math as NaN and the grid must
# fail. Also runs the unaligned (element-copy) variant, which must pass.
conf=./tools/pkv-conformance
if ! $conf --backend opencl --list >/dev/null 2>&1; then
  echo "1..0 # SKIP pkv-conformance not built"; exit 0
fi
out=$(PKV_KERNELS=gpu PKV_EMU_WAVE=32 PKV_EMU_POISON=1 PKV_EMU_LATE_WAIT=1 \
  $conf --backend opencl --decode-only 2>&1)
case "$out" in
*"1..0 # SKIP"*) echo "1..0 # SKIP no OpenCL device"; exit 0 ;;
esac
echo "1..2"
if echo "$out" | grep -q '^not ok'; then
  echo "ok 1 - a wait one group late fails the grid ($(echo "$out" | grep -c '^not ok') cases fail)"
else
  echo "not ok 1 - a wait one group late went unnoticed: the poison mode or the GPU kernel is not in use"
fi
out=$(PKV_KERNELS=gpu PKV_EMU_WAVE=64 PKV_EMU_UNALIGNED=1 PKV_STAGES=4 \
  $conf --backend opencl --decode-only 2>&1)
if echo "$out" | grep -q '^not ok' || ! echo "$out" | grep -q '^ok'; then
  echo "not ok 2 - unaligned variant, wave 64, 4 stages"
  echo "$out" | grep '^not ok' | sed 's/^/# /'
else
  echo "ok 2 - unaligned variant, wave 64, 4 stages: $(echo "$out" | grep -c '^ok') cases pass"
fi
