#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make check: the conformance grid on the HIP backend (AMD or NVIDIA build),
# or "1..0 # SKIP" when HIP is not built or there is no GPU.
exec ./tools/pkv-conformance --backend hip "$@"
