/* SPDX-License-Identifier: Apache-2.0 */
/* The fragment dialect's emulation (kernels/frag.h) on an OpenCL device
 * (PoCL on CI), under both lane maps (PKV_FRAG=1 NVIDIA m16n8k16 at wave
 * 32, PKV_FRAG=2 AMD 16x16x16 at wave 64) and both 16-bit types:
 *   - a 16x16x16 GEMM, B loaded row-major (pkv_frag_ld_b, the V tile) and
 *     from its transpose (pkv_frag_ld_bt, the K tile), against the host's
 *     product of the same values in double;
 *   - P -> A in registers (pkv_frag_c_to_a): C rounded to the 16-bit type
 *     times the identity gives exactly the host's rounding of C;
 *   - row max and sum over a fragment: every lane of a row gets the row's
 *     max (bitwise) and sum.
 * A wrong lane map entry, a map that does not cover each element once, or
 * a reduction over the wrong lanes fails a check. */
#include "dtype_convert.h"
#include "ocl.h"
#include "tap.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const char *const pkv__ocl_kernel_sources[];
extern const char *const pkv__ocl_kernel_files[];
extern const int pkv__ocl_kernel_count;

static const char *test_src =
    "__kernel void frag_test(__global const ushort *A, __global const ushort *B,\n"
    "    __global float *C, __global float *CT, __global float *P,\n"
    "    __global float *RM, __global float *RS) {\n"
    "  __local ushort a_s[16 * 24], b_s[16 * 24], bt_s[16 * 24], id_s[16 * 24];\n"
    "  PKV_FRAG_SCRATCH(fscr, PKV_WAVE);\n"
    "  PKV_TILE_SCRATCH(scr, PKV_WAVE);\n"
    "  const int l = get_local_id(0);\n"
    "  for (int i = l; i < 256; i += PKV_WAVE) {\n"
    "    const int r = i / 16, c = i % 16;\n"
    "    a_s[r * 24 + c] = A[i];\n"
    "    b_s[r * 24 + c] = B[i];\n"
    "    bt_s[c * 24 + r] = B[i];\n"
    "    id_s[r * 24 + c] = pkv_frag_f2bits(r == c ? 1.0f : 0.0f);\n"
    "  }\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  pkv_frag_a a, pa;\n"
    "  pkv_frag_b b, bt, id;\n"
    "  pkv_frag_c c, ct, p;\n"
    "  pkv_frag_ld_a(&a, a_s, 24);\n"
    "  pkv_frag_ld_b(&b, b_s, 24);\n"
    "  pkv_frag_ld_bt(&bt, bt_s, 24);\n"
    "  pkv_frag_ld_b(&id, id_s, 24);\n"
    "  pkv_frag_c_zero(&c);\n"
    "  pkv_frag_c_zero(&ct);\n"
    "  pkv_frag_c_zero(&p);\n"
    "  pkv_frag_mma(&c, &a, &b, fscr);\n"
    "  pkv_frag_mma(&ct, &a, &bt, fscr);\n"
    "  pkv_frag_c_to_a(&pa, &c);\n"
    "  pkv_frag_mma(&p, &pa, &id, fscr);\n"
    "  for (int i = 0; i < PKV_FRAG_N; i++) {\n"
    "    const int e = pkv_frag_row(l, i) * 16 + pkv_frag_col(l, i);\n"
    "    C[e] = c.x[i];\n"
    "    CT[e] = ct.x[i];\n"
    "    P[e] = p.x[i];\n"
    "  }\n"
    "  for (int r = 0; r < PKV_FRAG_LROWS; r++) {\n"
    "    float mx = -INFINITY, sm = 0.0f;\n"
    "    for (int i = 0; i < PKV_FRAG_N; i++)\n"
    "      if (pkv_frag_lrow(i) == r) {\n"
    "        mx = fmax(mx, c.x[i]);\n"
    "        sm += c.x[i];\n"
    "      }\n"
    "    mx = pkv_frag_row_max(mx, scr);\n"
    "    sm = pkv_frag_row_sum(sm, scr);\n"
    "    /* one slot per (row, lane): every lane reports what it got */\n"
    "    const int row = pkv_frag_row(l, pkv_frag_lrow_elem(r));\n"
    "    RM[row * PKV_WAVE + l] = mx;\n"
    "    RS[row * PKV_WAVE + l] = sm;\n"
    "  }\n"
    "}\n"
    "__kernel void frag_maps(__global int *M) {\n"
    "  const int l = get_local_id(0);\n"
    "  for (int i = 0; i < PKV_FRAG_N; i++) {\n"
    "    M[(l * PKV_FRAG_N + i) * 4 + 0] = pkv_frag_row(l, i);\n"
    "    M[(l * PKV_FRAG_N + i) * 4 + 1] = pkv_frag_col(l, i);\n"
    "    M[(l * PKV_FRAG_N + i) * 4 + 2] = pkv_frag_bk(l, i);\n"
    "    M[(l * PKV_FRAG_N + i) * 4 + 3] = pkv_frag_bn(l, i);\n"
    "  }\n"
    "}\n";

/* The instruction each map stands for, simulated from the vendors'
 * documented register layouts (written here independently of frag.h),
 * fed with the registers the device's maps fill: the result, read back
 * through the device's C map, must be A.B.
 *   NVIDIA (PTX ISA, mma.m16n8k16 .f16/.bf16): g = lane>>2, t = lane%4;
 *     a_i: row g (+8 for i = 2,3,6,7), col 2t + i%2 (+8 for i >= 4);
 *     b_i: k 2t + i%2 (+8 for i >= 2), n g; c_i: row g (+8 for i >= 2),
 *     col 2t + i%2. Our 8 B/C elements are two n8 tiles (4 each).
 *   AMD (CDNA ISA, v_mfma_f32_16x16x16f16/bf16_1k): A'[i][k] in lane
 *     i + 16*(k/4) item k%4; B'[k][j] in lane j + 16*(k/4) item k%4;
 *     D[i][j] in lane j + 16*(i/4) item i%4. frag.h passes our B as A'
 *     and our A as B'. */
static int check_hw(const int *M, int frag, const float *a, const float *b) {
  const int wave = frag == 1 ? 32 : 64, n = frag == 1 ? 8 : 4;
  int bad = 0;
  for (int l = 0; l < wave; l++)
    for (int i = 0; i < n; i++) {
      const int *m = M + (l * n + i) * 4;
      double want = 0;
      for (int kk = 0; kk < 16; kk++) want += (double)a[m[0] * 16 + kk] * b[kk * 16 + m[1]];
      double got = 0;
      if (frag == 1) {
        const int g = l >> 2, tl = l & 3, tile = i >> 2, ci = i & 3;
        const int row = g + 8 * (ci >= 2), col = 2 * tl + (ci & 1); /* of the n8 tile */
        /* D[row][col] = sum_k HA[row][k] HB[k][col]: find the lane and
         * register holding each operand element under the PTX layouts */
        for (int kk = 0; kk < 16; kk++) {
          double av = NAN, bv = NAN;
          for (int l2 = 0; l2 < 32; l2++)
            for (int r = 0; r < 8; r++) {
              const int g2 = l2 >> 2, t2 = l2 & 3;
              const int ar = g2 + 8 * ((r >> 1) & 1), ac = 2 * t2 + (r & 1) + 8 * (r >> 2);
              if (ar == row && ac == kk) {
                const int *m2 = M + (l2 * 8 + r) * 4; /* our A element there */
                av = a[m2[0] * 16 + m2[1]];
              }
              if (r < 4) {
                const int bk = 2 * t2 + (r & 1) + 8 * (r >= 2), bn = g2;
                if (bk == kk && bn == col) {
                  const int *m2 = M + (l2 * 8 + 4 * tile + r) * 4; /* our B element */
                  bv = b[m2[2] * 16 + m2[3]];
                }
              }
            }
          got += av * bv;
        }
      } else {
        /* D lane l item i = D[4*(l/16)+i][l%16] = sum_k A'[..][k] B'[k][..] */
        const int di = 4 * (l >> 4) + i, dj = l & 15;
        for (int kk = 0; kk < 16; kk++) {
          const int la = di + 16 * (kk / 4), lb = dj + 16 * (kk / 4), e = kk % 4;
          const int *mb = M + (la * 4 + e) * 4; /* A' = our B registers */
          const int *ma = M + (lb * 4 + e) * 4; /* B' = our A registers */
          got += (double)b[mb[2] * 16 + mb[3]] * a[ma[0] * 16 + ma[1]];
        }
      }
      if (!(fabs(got - want) <= 1e-9)) bad++;
    }
  return bad;
}

static uint16_t to_bits(float f, int dt) {
  return dt == 2 ? pkv__f32_to_bf16(f) : pkv__f32_to_f16(f);
}
static float from_bits(uint16_t u, int dt) {
  return dt == 2 ? pkv_bf16_to_f32(u) : pkv_f16_to_f32(u);
}

static void run_map(cl_context ctx, cl_device_id dev, cl_command_queue q,
                    int frag, int dt) {
  const int wave = frag == 1 ? 32 : 64;
  const char *tname = dt == 2 ? "bf16" : "f16";
  /* The dialect's files, up to and including kernels/frag.h (the last
   * file of that name), then the test kernel. */
  int last = -1;
  for (int i = 0; i < pkv__ocl_kernel_count; i++)
    if (strcmp(pkv__ocl_kernel_files[i], "frag.h") == 0) last = i;
  if (last < 0) {
    ok(0, "map %d %s: frag.h among the embedded kernel files", frag, tname);
    return;
  }
  const char *srcs[64];
  cl_uint ns = 0;
  for (int i = 0; i <= last && ns < 63; i++) srcs[ns++] = pkv__ocl_kernel_sources[i];
  srcs[ns++] = test_src;
  char opts[256];
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -DPKV_HEAD_DIM=64 -DPKV_DTYPE=%d -DPKV_WITH_MMA "
           "-DPKV_FRAG=%d -DPKV_WAVE=%d",
           dt, frag, wave);
  cl_int err;
  cl_program prog = clCreateProgramWithSource(ctx, ns, srcs, NULL, &err);
  if (err == CL_SUCCESS) err = clBuildProgram(prog, 1, &dev, opts, NULL, NULL);
  if (err != CL_SUCCESS) {
    char log[4096] = "";
    if (prog)
      clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
    ok(0, "map %d %s: build (%d): %.600s", frag, tname, (int)err, log);
    if (prog) clReleaseProgram(prog);
    return;
  }
  cl_kernel k = clCreateKernel(prog, "frag_test", &err);
  uint16_t A[256], B[256];
  float a[256], b[256];
  srand(1000 + 10 * frag + dt);
  for (int i = 0; i < 256; i++) {
    A[i] = to_bits((float)(rand() % 2001 - 1000) / 500.0f, dt);
    B[i] = to_bits((float)(rand() % 2001 - 1000) / 500.0f, dt);
    a[i] = from_bits(A[i], dt);
    b[i] = from_bits(B[i], dt);
  }
  const size_t rmn = 16 * (size_t)wave;
  cl_mem dA = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof A, A, &err);
  cl_mem dB = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof B, B, &err);
  cl_mem dC = clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, 256 * sizeof(float), NULL, &err);
  cl_mem dCT = clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, 256 * sizeof(float), NULL, &err);
  cl_mem dP = clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, 256 * sizeof(float), NULL, &err);
  cl_mem dRM = clCreateBuffer(ctx, CL_MEM_READ_WRITE, rmn * sizeof(float), NULL, &err);
  cl_mem dRS = clCreateBuffer(ctx, CL_MEM_READ_WRITE, rmn * sizeof(float), NULL, &err);
  /* NaN everywhere first: an element no lane writes stays NaN and fails */
  float *nan = malloc(rmn * sizeof(float));
  for (size_t i = 0; i < rmn; i++) nan[i] = NAN;
  cl_mem all[5] = {dC, dCT, dP, dRM, dRS};
  for (int i = 0; i < 5; i++)
    clEnqueueWriteBuffer(q, all[i], CL_TRUE, 0, (i < 3 ? 256 : rmn) * sizeof(float), nan, 0,
                         NULL, NULL);
  cl_mem args[7] = {dA, dB, dC, dCT, dP, dRM, dRS};
  for (int i = 0; i < 7; i++) clSetKernelArg(k, (cl_uint)i, sizeof(cl_mem), &args[i]);
  size_t g = (size_t)wave;
  err = clEnqueueNDRangeKernel(q, k, 1, NULL, &g, &g, 0, NULL, NULL);
  float C[256], CT[256], P[256];
  float *RM = malloc(rmn * sizeof(float)), *RS = malloc(rmn * sizeof(float));
  clEnqueueReadBuffer(q, dC, CL_TRUE, 0, sizeof C, C, 0, NULL, NULL);
  clEnqueueReadBuffer(q, dCT, CL_TRUE, 0, sizeof CT, CT, 0, NULL, NULL);
  clEnqueueReadBuffer(q, dP, CL_TRUE, 0, sizeof P, P, 0, NULL, NULL);
  clEnqueueReadBuffer(q, dRM, CL_TRUE, 0, rmn * sizeof(float), RM, 0, NULL, NULL);
  clEnqueueReadBuffer(q, dRS, CL_TRUE, 0, rmn * sizeof(float), RS, 0, NULL, NULL);
  ok(err == CL_SUCCESS, "map %d %s: kernel ran", frag, tname);

  double worst = 0, worst_t = 0;
  int bad = 0, bad_t = 0, bad_p = 0, bad_m = 0, bad_s = 0;
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) {
      double s = 0;
      for (int kk = 0; kk < 16; kk++) s += (double)a[r * 16 + kk] * b[kk * 16 + c];
      double e = fabs(C[r * 16 + c] - s), et = fabs(CT[r * 16 + c] - s);
      if (!(e <= 1e-4)) bad++;
      if (!(et <= 1e-4)) bad_t++;
      if (e > worst) worst = e;
      if (et > worst_t) worst_t = et;
      /* P: C rounded to the 16-bit type, times 1, exactly */
      if (P[r * 16 + c] != from_bits(to_bits(C[r * 16 + c], dt), dt)) bad_p++;
    }
  ok(bad == 0, "map %d %s: 16x16x16 GEMM (B row-major) matches the host, max err %.3g",
     frag, tname, worst);
  ok(bad_t == 0, "map %d %s: 16x16x16 GEMM (B from its transpose) matches, max err %.3g",
     frag, tname, worst_t);
  ok(bad_p == 0, "map %d %s: accumulator -> A operand in registers is C rounded (%d wrong)",
     frag, tname, bad_p);
  /* each row is held by 4 lanes; every reporting lane must
   * hold the row's max (bitwise) and sum; the other slots stay NaN */
  for (int r = 0; r < 16; r++) {
    float mx = -INFINITY;
    double sm = 0;
    for (int c = 0; c < 16; c++) {
      if (C[r * 16 + c] > mx) mx = C[r * 16 + c];
      sm += C[r * 16 + c];
    }
    int holders = 0;
    for (int l = 0; l < wave; l++) {
      float m = RM[r * wave + l], s = RS[r * wave + l];
      if (isnan(m) && isnan(s)) continue;
      holders++;
      if (m != mx) bad_m++;
      if (!(fabs(s - sm) <= 1e-3)) bad_s++;
    }
    if (holders != 4) bad_m++; /* 4 elements of a row per lane, on both maps */
  }
  {
    cl_kernel km = clCreateKernel(prog, "frag_maps", &err);
    const size_t mn = (size_t)wave * (frag == 1 ? 8 : 4) * 4;
    int *M = malloc(mn * sizeof(int));
    cl_mem dM = clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, mn * sizeof(int), NULL, &err);
    clSetKernelArg(km, 0, sizeof(cl_mem), &dM);
    err = clEnqueueNDRangeKernel(q, km, 1, NULL, &g, &g, 0, NULL, NULL);
    clEnqueueReadBuffer(q, dM, CL_TRUE, 0, mn * sizeof(int), M, 0, NULL, NULL);
    int hw = err == CL_SUCCESS ? check_hw(M, frag, a, b) : -1;
    ok(hw == 0, "map %d %s: the lane map drives the %s instruction, simulated from its "
       "documented register layout, to A.B (%d wrong)", frag, tname,
       frag == 1 ? "mma.sync.m16n8k16" : "v_mfma_f32_16x16x16", hw);
    clReleaseMemObject(dM);
    clReleaseKernel(km);
    free(M);
  }
  ok(bad_m == 0, "map %d %s: row max reaches every lane of a row (4 lanes per row)", frag,
     tname);
  ok(bad_s == 0, "map %d %s: row sum reaches every lane of a row", frag, tname);
  for (int i = 0; i < 5; i++) clReleaseMemObject(all[i]);
  clReleaseMemObject(dA);
  clReleaseMemObject(dB);
  free(nan);
  free(RM);
  free(RS);
  clReleaseKernel(k);
  clReleaseProgram(prog);
}

int main(void) {
  cl_platform_id plats[8];
  cl_uint np = 0;
  if (clGetPlatformIDs(8, plats, &np) != CL_SUCCESS || np == 0)
    plan_skip_all("no OpenCL platform");
  cl_device_id dev = NULL;
  for (cl_uint i = 0; i < np && !dev; i++) {
    cl_uint nd = 0;
    if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, 1, &dev, &nd) != CL_SUCCESS || nd == 0)
      dev = NULL;
  }
  if (!dev) plan_skip_all("no OpenCL device");
  cl_int err;
  cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
  if (err != CL_SUCCESS) plan_skip_all("clCreateContext failed");
  cl_command_queue q = clCreateCommandQueue(ctx, dev, 0, &err);
  plan(28);
  for (int frag = 1; frag <= 2; frag++)
    for (int dt = 1; dt <= 2; dt++) run_map(ctx, dev, q, frag, dt);
  clReleaseCommandQueue(q);
  clReleaseContext(ctx);
  return tap_failed ? 1 : 0;
}
