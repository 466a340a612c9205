#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian/Ubuntu packages pagedkv's build and tests need.
#   tools/install-deps.sh          build tools, xxHash, OpenCL headers + ICD
#                                  loader, PoCL (an OpenCL device on the CPU),
#                                  UCX (the page transfer module)
#   tools/install-deps.sh --hip    also hipcc and the HIP runtime (AMD build)
#   tools/install-deps.sh --torch  also python3-torch (large; the Python
#                                  package's torch tests skip without it)
# Always: python3, python3-cffi and python3-numpy for the Python package.
# Run as root or through sudo; a non-root user with sudo is handled too.
set -eu

usage() {
  echo "usage: $0 [--hip] [--torch] [--no-update]" >&2
  echo "  --hip        also install hipcc and libamdhip64-dev (configure --with-hip)" >&2
  echo "  --torch      also install python3-torch (the Python attention tests)" >&2
  echo "  --no-update  skip 'apt-get update'" >&2
}

with_hip=no
with_torch=no
update=yes
for arg in "$@"; do
  case "$arg" in
    --hip) with_hip=yes ;;
    --torch) with_torch=yes ;;
    --no-update) update=no ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$0: unknown option '$arg'" >&2; usage; exit 2 ;;
  esac
done

if ! command -v apt-get >/dev/null 2>&1; then
  echo "$0: apt-get not found: this script covers Debian and Ubuntu only." >&2
  echo "Install by hand: a C11 compiler, autoconf, automake, libtool, pkg-config," >&2
  echo "xxHash headers, OpenCL headers and ICD loader (optional: PoCL, hipcc)." >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=
elif command -v sudo >/dev/null 2>&1; then
  SUDO=sudo
else
  echo "$0: run as root or install sudo" >&2
  exit 1
fi

packages="build-essential autoconf automake libtool pkg-config libxxhash-dev
ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo libucx-dev
python3 python3-cffi python3-numpy"
if [ "$with_hip" = yes ]; then
  packages="$packages hipcc libamdhip64-dev"
fi
if [ "$with_torch" = yes ]; then
  packages="$packages python3-torch"
fi

export DEBIAN_FRONTEND=noninteractive
if [ "$update" = yes ]; then
  $SUDO apt-get update
fi
# shellcheck disable=SC2086  # the package list is split on purpose
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y $packages
