#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make check: the decode cases of the conformance grid on OpenCL (PoCL on
# CI) with the GPU-shaped decode kernel forced, its sub-group shuffles
# emulated at wave width 32, and async copies that land only at their wait
# (a missing wait computes NaN). Same kernel bodies as the GPU builds.
PKV_KERNELS=gpu PKV_EMU_WAVE=32 PKV_EMU_POISON=1 \
  PKV_STAGES=${PKV_STAGES:-2} \
  exec ./tools/pkv-conformance --backend opencl --decode-only "$@"
