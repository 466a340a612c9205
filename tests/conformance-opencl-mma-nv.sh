#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make check: the conformance grid on OpenCL (PoCL on CI) with prefill,
# extend, speculative decode and GQA >= 4 decode of f16/bf16 caches on the
# matrix-unit kernel (kernels/prefill_mma.cl), its fragments emulated
# under NVIDIA's m16n8k16 lane map (wave 32), async copies that land only
# at their wait. The f32 and quantized cases run the SIMT kernels as usual.
PKV_KERNELS=mma PKV_FRAG=1 PKV_EMU_POISON=1 \
  exec ./tools/pkv-conformance --backend opencl "$@"
