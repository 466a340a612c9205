/* SPDX-License-Identifier: Apache-2.0 */
#include "tap.h"
int main(void) { plan(1); ok(1, "x"); return 0; }
