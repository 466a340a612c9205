#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian/Ubuntu packages pagedkv's build and tests need.
#   tools/install-deps.sh          build tools, xxHash, OpenCL headers + ICD
#                                  loader, PoCL (an OpenCL device on the CPU)
#   tools/install-deps.sh --hip    also hipcc and the HIP runtime (AMD build)
# Run as root or through sudo; a non-root user with sudo is handled too.
set -eu

usage() {
  echo "usage: $0 [--hip] [--no-update]" >&2
  echo "  --hip        also install hipcc and libamdhip64-dev (configure --with-hip)" >&2
  echo "  --no-update  skip 'apt-get update'" >&2
}

with_hip=no
update=yes
for arg in "$@"; do
  case "$arg" in
    --hip) with_hip=yes ;;
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
ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo python3"
if [ "$with_hip" = yes ]; then
  packages="$packages hipcc libamdhip64-dev"
fi

export DEBIAN_FRONTEND=noninteractive
if [ "$update" = yes ]; then
  $SUDO apt-get update
fi
# shellcheck disable=SC2086  # the package list is split on purpose
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y $packages
