/* SPDX-License-Identifier: Apache-2.0 */
/* Removes a test's scratch directory (a program-cache directory and its
 * entries), shared by the OpenCL tests. */
#ifndef PKV_TEST_RM_TREE_H
#define PKV_TEST_RM_TREE_H

#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

static void cleanup_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char p[1024];
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (remove(p) != 0) cleanup_dir(p), rmdir(p);
  }
  closedir(d);
  rmdir(dir);
}

#endif
