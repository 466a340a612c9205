#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make check: the conformance grid on the OpenCL backend (PoCL on CI), or
# "1..0 # SKIP" when OpenCL is not built or has no device.
exec ./tools/pkv-conformance --backend opencl "$@"
