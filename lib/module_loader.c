/* SPDX-License-Identifier: Apache-2.0 */
/* Finds the backends of a module build: backend-opencl.so, backend-hip.so
 * (AMD) and backend-cuda.so (NVIDIA) are loaded on first use with
 * dlopen(RTLD_NOW | RTLD_LOCAL), each once per process (pthread_once), from
 * the directories of PKV_BACKEND_PATH and then $(pkglibdir). Only absolute
 * directories are searched: never the current directory, and never the
 * dynamic linker's search path, so what runs is what was installed.
 * RTLD_LOCAL keeps the modules' symbols (two HIP variants define the same
 * kernel names) out of the process's global scope. */
#include "alloc.h"
#include "module.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PKV_MODULE_DIR
#error "build with -DPKV_MODULE_DIR=\"$(pkglibdir)\""
#endif

#define PKV_MODULE_ERR_LEN 1536

typedef struct module_slot {
  const char *file;             /* backend-<name>.so */
  pthread_once_t once;
  void *handle;
  const pkv_backend_module *mod;
  char err[PKV_MODULE_ERR_LEN]; /* why it did not load */
} module_slot;

enum { SLOT_OPENCL, SLOT_HIP, SLOT_CUDA, SLOT_COUNT };

static module_slot slots[SLOT_COUNT] = {
    [SLOT_OPENCL] = {.file = "backend-opencl.so", .once = PTHREAD_ONCE_INIT},
    [SLOT_HIP] = {.file = "backend-hip.so", .once = PTHREAD_ONCE_INIT},
    [SLOT_CUDA] = {.file = "backend-cuda.so", .once = PTHREAD_ONCE_INIT},
};

static pkv_status host_vfail(const pkv_context *ctx, pkv_status st,
                             const char *fmt, va_list ap) {
  return pkv__vfail(ctx, st, fmt, ap);
}

static const pkv_host_services host_services = {
    .abi_version = PKV_MODULE_ABI_VERSION,
    .struct_size = sizeof(pkv_host_services),
    .vfail = host_vfail,
    .clear_error = pkv__clear_error,
    .error_to_thread = pkv__error_to_thread,
    .malloc_fn = pkv__malloc,
    .calloc_fn = pkv__calloc,
    .realloc_fn = pkv__realloc,
    .free_fn = pkv__free,
};

/* Checks what the entry point returned; on failure writes why to s->err. */
static int accept_module(module_slot *s, const char *path,
                         const pkv_backend_module *m) {
  if (!m) {
    snprintf(s->err, sizeof s->err, "%s: %s() returned NULL", path,
             PKV_MODULE_ENTRY);
    return 0;
  }
  if (m->abi_version != PKV_MODULE_ABI_VERSION) {
    snprintf(s->err, sizeof s->err,
             "%s: module interface version %u, this library needs %u "
             "(install the module of the same pagedkv build)",
             path, m->abi_version, PKV_MODULE_ABI_VERSION);
    return 0;
  }
  if (m->struct_size < offsetof(pkv_backend_module, build_info) ||
      m->context_size != sizeof(struct pkv_context) ||
      m->buffer_size != sizeof(struct pkv_buffer) ||
      m->ops_size != sizeof(pkv_backend_ops) || !m->ops || !m->name) {
    snprintf(s->err, sizeof s->err,
             "%s: module built against other internal structs (context %u, "
             "buffer %u, ops %u bytes; this library: %zu, %zu, %zu)",
             path, m->context_size, m->buffer_size, m->ops_size,
             sizeof(struct pkv_context), sizeof(struct pkv_buffer),
             sizeof(pkv_backend_ops));
    return 0;
  }
  return 1;
}

/* dlopen of one existing file; 1 when it is a usable module. */
static int load_file(module_slot *s, const char *path) {
  dlerror();
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(s->err, sizeof s->err, "%s", e ? e : path);
    return 0;
  }
  pkv_backend_module_fn entry;
  /* POSIX: a data pointer from dlsym converts to a function pointer. */
  *(void **)&entry = dlsym(h, PKV_MODULE_ENTRY);
  if (!entry) {
    const char *e = dlerror();
    snprintf(s->err, sizeof s->err, "%s", e ? e : PKV_MODULE_ENTRY);
    dlclose(h);
    return 0;
  }
  const pkv_backend_module *m = entry(&host_services);
  if (!accept_module(s, path, m)) {
    dlclose(h);
    return 0;
  }
  s->handle = h;
  s->mod = m;
  return 1;
}

/* Tries dir/file; 1 when loaded, 0 when absent, -1 when present but broken
 * (a broken module is an error to report, not a reason to fall back to
 * another copy). */
static int try_dir(module_slot *s, const char *dir, size_t len) {
  char path[4096];
  if (len == 0 || dir[0] != '/') return 0; /* relative: never searched */
  int n = snprintf(path, sizeof path, "%.*s/%s", (int)len, dir, s->file);
  if (n < 0 || (size_t)n >= sizeof path) return 0;
  if (access(path, F_OK) != 0) return 0;
  return load_file(s, path) ? 1 : -1;
}

static void load_slot(module_slot *s) {
  const char *env = getenv("PKV_BACKEND_PATH");
  if (env) {
    for (const char *p = env;;) {
      const char *colon = strchr(p, ':');
      size_t len = colon ? (size_t)(colon - p) : strlen(p);
      int r = try_dir(s, p, len);
      if (r != 0) return;
      if (!colon) break;
      p = colon + 1;
    }
  }
  int r = try_dir(s, PKV_MODULE_DIR, strlen(PKV_MODULE_DIR));
  if (r != 0) return;
  /* Absent everywhere: dlopen the installed path anyway for the loader's
   * own words ("cannot open shared object file: No such file ..."). */
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", PKV_MODULE_DIR, s->file);
  if (load_file(s, path)) return;
  char why[PKV_MODULE_ERR_LEN / 2];
  memcpy(why, s->err, sizeof why);
  why[sizeof why - 1] = '\0';
  if (env)
    snprintf(s->err, sizeof s->err,
             "%s (searched PKV_BACKEND_PATH='%.200s' and %.200s)", why, env,
             PKV_MODULE_DIR);
  else
    snprintf(s->err, sizeof s->err, "%s (searched %.200s)", why,
             PKV_MODULE_DIR);
}

#define ONCE_FN(slot)                                                         \
  static void once_##slot(void) { load_slot(&slots[slot]); }
ONCE_FN(SLOT_OPENCL)
ONCE_FN(SLOT_HIP)
ONCE_FN(SLOT_CUDA)

static const pkv_backend_module *slot_get(int i) {
  static void (*const fns[SLOT_COUNT])(void) = {
      once_SLOT_OPENCL, once_SLOT_HIP, once_SLOT_CUDA};
  pthread_once(&slots[i].once, fns[i]);
  return slots[i].mod;
}

/* PKV_BACKEND_HIP is served by the AMD or the NVIDIA module, whichever
 * finds a device (AMD first when a node somehow has both); with no device
 * anywhere, the first that loads, so that listing answers "0 devices"
 * rather than "no backend". Decided once. */
static pthread_once_t hip_once = PTHREAD_ONCE_INIT;
static const pkv_backend_module *hip_choice;

static int has_device(const pkv_backend_module *m) {
  pkv_device_info info;
  int n = 0;
  return m->ops->list_devices(&info, 1, &n) == PKV_OK && n > 0;
}

static void choose_hip(void) {
  const pkv_backend_module *amd = slot_get(SLOT_HIP);
  const pkv_backend_module *nv = slot_get(SLOT_CUDA);
  if (amd && has_device(amd))
    hip_choice = amd;
  else if (nv && has_device(nv))
    hip_choice = nv;
  else
    hip_choice = amd ? amd : nv;
}

const pkv_backend_ops *pkv__backend_ops_for(pkv_backend_kind kind) {
  const pkv_backend_module *m = NULL;
  switch (kind) {
  case PKV_BACKEND_CPU: return &pkv__cpu_backend;
  case PKV_BACKEND_OPENCL: m = slot_get(SLOT_OPENCL); break;
  case PKV_BACKEND_HIP:
    pthread_once(&hip_once, choose_hip);
    m = hip_choice;
    break;
  default: return NULL;
  }
  return m ? m->ops : NULL;
}

pkv_status pkv__backend_get(pkv_backend_kind kind, const pkv_backend_ops **out) {
  *out = pkv__backend_ops_for(kind);
  if (*out) return PKV_OK;
  switch (kind) {
  case PKV_BACKEND_OPENCL:
    return pkv__fail(NULL, PKV_ERR_NO_BACKEND,
                     "backend 'opencl': module not loaded: %s",
                     slots[SLOT_OPENCL].err);
  case PKV_BACKEND_HIP:
    return pkv__fail(NULL, PKV_ERR_NO_BACKEND,
                     "backend 'hip': no module loaded: %s; %s",
                     slots[SLOT_HIP].err, slots[SLOT_CUDA].err);
  default:
    return pkv__fail(NULL, PKV_ERR_NO_BACKEND, "backend %d is unknown",
                     (int)kind);
  }
}
