#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Writes the linker version script of libpagedkv to stdout: every function
# declared PKV_API in pagedkv.h (the first "pkv_name(" of each PKV_API
# line), global under the node PAGEDKV_1 (the soname's major, doc/ABI.md);
# everything else local. Kernel handles and internal pkv__ functions stay
# hidden on every vendor, whatever visibility the device compiler gives
# them.
set -eu
header=${1:?usage: gen-symbol-map.sh pagedkv.h}
names=$(sed -n 's/^PKV_API[^(]*[^a-zA-Z0-9_]\(pkv_[a-zA-Z0-9_]*\)[ ]*(.*/\1/p' "$header" | LC_ALL=C sort -u)
[ -n "$names" ] || { echo "gen-symbol-map.sh: no PKV_API functions in $header" >&2; exit 1; }
echo "/* generated from pagedkv.h by tools/gen-symbol-map.sh */"
echo "PAGEDKV_1 {"
echo "  global:"
for n in $names; do echo "    $n;"; done
echo "  local: *;"
echo "};"
