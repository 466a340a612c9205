#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make check: as conformance-opencl-mma-nv.sh, under AMD CDNA's
# 16x16x16 MFMA lane map (wave 64).
PKV_KERNELS=mma PKV_FRAG=2 PKV_EMU_POISON=1 \
  exec ./tools/pkv-conformance --backend opencl "$@"
