/* edgepack minimal-ORT verifier: runs a model through one ONNX Runtime shared library via the C API.
 *
 * Usage: verifier LIB MODEL OUTDIR THREADS -- ID NAME=IN.npy [NAME=IN.npy ...] [-- ID ...]
 * For each sample ID, writes every model output to OUTDIR/ID.OUTPUT_NAME.npy.  Prints one line of JSON at the
 * end: {"api_version": N, "samples": K, "peak_rss_kb": VmHWM}.
 *
 * The library is dlopen()ed, so the same binary runs the freshly built minimal library and full ORT of the same
 * version (the reference), and needs no link-time ORT.  Compiled natively and with the aarch64 cross compiler in the
 * build chroot, against the onnxruntime_c_api.h of the ORT sources being built.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxruntime_c_api.h"

static const OrtApi *g_ort;

static void die(const char *what, const char *detail) {
  fprintf(stderr, "verifier: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

static void check(OrtStatus *st, const char *what) {
  if (st != NULL) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", g_ort->GetErrorMessage(st));
    g_ort->ReleaseStatus(st);
    die(what, msg);
  }
}

typedef struct {
  ONNXTensorElementDataType type;
  size_t elem_size;
  int64_t shape[16];
  size_t ndim;
  void *data;
  size_t count;
} npy_t;

static void npy_dtype(const char *descr, npy_t *a) {
  /* descr like '<i8', '|b1', '<f4' (little-endian or byte-sized only). */
  if (strstr(descr, "i8")) { a->type = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64; a->elem_size = 8; }
  else if (strstr(descr, "i4")) { a->type = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32; a->elem_size = 4; }
  else if (strstr(descr, "f4")) { a->type = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; a->elem_size = 4; }
  else if (strstr(descr, "f8")) { a->type = ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE; a->elem_size = 8; }
  else if (strstr(descr, "u1")) { a->type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8; a->elem_size = 1; }
  else if (strstr(descr, "i1")) { a->type = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8; a->elem_size = 1; }
  else if (strstr(descr, "b1")) { a->type = ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL; a->elem_size = 1; }
  else die("unsupported .npy dtype", descr);
  if (descr[0] == '>') die("big-endian .npy is not supported", descr);
}

static void npy_read(const char *path, npy_t *a) {
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open", path);
  unsigned char head[10];
  if (fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY", 6) != 0) die("not a .npy file", path);
  size_t hlen;
  if (head[6] == 1) {
    hlen = (size_t)head[8] | ((size_t)head[9] << 8);
  } else {
    unsigned char more[2];
    if (fread(more, 1, 2, f) != 2) die("truncated .npy", path);
    hlen = (size_t)head[8] | ((size_t)head[9] << 8) | ((size_t)more[0] << 16) | ((size_t)more[1] << 24);
  }
  char *h = calloc(1, hlen + 1);
  if (!h || fread(h, 1, hlen, f) != hlen) die("truncated .npy header", path);
  char *d = strstr(h, "'descr':");
  char *fo = strstr(h, "'fortran_order':");
  char *s = strstr(h, "'shape':");
  if (!d || !fo || !s) die("bad .npy header", path);
  if (strncmp(strchr(fo, ':') + 1, " True", 5) == 0) die("Fortran-order .npy is not supported", path);
  char descr[16] = {0};
  sscanf(strchr(d, ':') + 1, " '%15[^']'", descr);
  npy_dtype(descr, a);
  char *p = strchr(s, '(') + 1;
  a->ndim = 0;
  a->count = 1;
  while (*p && *p != ')') {
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p) { p++; continue; }
    if (a->ndim >= 16) die("too many dimensions", path);
    a->shape[a->ndim++] = v;
    a->count *= (size_t)v;
    p = end;
  }
  free(h);
  a->data = malloc(a->count * a->elem_size + 1);
  if (!a->data || fread(a->data, a->elem_size, a->count, f) != a->count) die("truncated .npy data", path);
  fclose(f);
}

static const char *npy_descr(ONNXTensorElementDataType t, size_t *size) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: *size = 4; return "<f4";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: *size = 8; return "<f8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: *size = 8; return "<i8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: *size = 4; return "<i4";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: *size = 1; return "|u1";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: *size = 1; return "|i1";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: *size = 1; return "|b1";
    default: die("unsupported output element type", NULL); return NULL;
  }
}

static void npy_write(const char *path, OrtValue *v) {
  OrtTensorTypeAndShapeInfo *info;
  check(g_ort->GetTensorTypeAndShape(v, &info), "GetTensorTypeAndShape");
  ONNXTensorElementDataType t;
  check(g_ort->GetTensorElementType(info, &t), "GetTensorElementType");
  size_t ndim;
  check(g_ort->GetDimensionsCount(info, &ndim), "GetDimensionsCount");
  int64_t dims[16];
  if (ndim > 16) die("too many output dimensions", path);
  check(g_ort->GetDimensions(info, dims, ndim), "GetDimensions");
  g_ort->ReleaseTensorTypeAndShapeInfo(info);
  size_t esize, count = 1;
  const char *descr = npy_descr(t, &esize);
  char header[256];
  int n = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  for (size_t i = 0; i < ndim; i++) {
    n += snprintf(header + n, sizeof header - (size_t)n, "%lld,%s", (long long)dims[i], (i + 1 < ndim) ? " " : "");
    count *= (size_t)dims[i];
  }
  n += snprintf(header + n, sizeof header - (size_t)n, "), }");
  /* Pad so the data starts on a 64-byte boundary, as numpy does. */
  size_t total = 10 + (size_t)n + 1;
  size_t pad = (64 - total % 64) % 64;
  size_t hlen = (size_t)n + pad + 1;
  void *data;
  check(g_ort->GetTensorMutableData(v, &data), "GetTensorMutableData");
  FILE *f = fopen(path, "wb");
  if (!f) die("cannot write", path);
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
  fwrite(pre, 1, 10, f);
  fwrite(header, 1, (size_t)n, f);
  for (size_t i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
  if (fwrite(data, esize, count, f) != count) die("short write", path);
  fclose(f);
}

static long peak_rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
  fclose(f);
  return kb;
}

int main(int argc, char **argv) {
  if (argc < 5) die("usage: verifier LIB MODEL OUTDIR THREADS -- ID NAME=IN.npy ... [-- ID ...]", NULL);
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) die("cannot load the ORT library", dlerror());
  const OrtApiBase *(*get_base)(void) = (const OrtApiBase *(*)(void))dlsym(lib, "OrtGetApiBase");
  if (!get_base) die("the library has no OrtGetApiBase", argv[1]);
  g_ort = get_base()->GetApi(ORT_API_VERSION);
  if (!g_ort) die("the library does not offer ORT API version", "see ORT_API_VERSION");
  OrtEnv *env;
  check(g_ort->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "edgepack-verify", &env), "CreateEnv");
  OrtSessionOptions *opts;
  check(g_ort->CreateSessionOptions(&opts), "CreateSessionOptions");
  int threads = atoi(argv[4]);
  /* One thread: the reduction order, and so the rounding, is then fixed on both sides. */
  check(g_ort->SetIntraOpNumThreads(opts, threads > 0 ? threads : 1), "SetIntraOpNumThreads");
  check(g_ort->SetInterOpNumThreads(opts, 1), "SetInterOpNumThreads");
  OrtSession *sess;
  check(g_ort->CreateSession(env, argv[2], opts, &sess), "CreateSession");
  OrtAllocator *alloc;
  check(g_ort->GetAllocatorWithDefaultOptions(&alloc), "GetAllocatorWithDefaultOptions");
  size_t nout;
  check(g_ort->SessionGetOutputCount(sess, &nout), "SessionGetOutputCount");
  char **out_names = calloc(nout, sizeof(char *));
  for (size_t i = 0; i < nout; i++) check(g_ort->SessionGetOutputName(sess, i, alloc, &out_names[i]), "OutputName");
  OrtMemoryInfo *mem;
  check(g_ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mem), "CreateCpuMemoryInfo");
  int samples = 0;
  if (argc < 7 || strcmp(argv[5], "--") != 0) die("expected -- ID NAME=FILE.npy after THREADS", NULL);
  int i = 6;
  while (i < argc) {
    const char *id = argv[i++];
    const char *in_names[64];
    OrtValue *in_vals[64];
    npy_t arrays[64];
    size_t nin = 0;
    while (i < argc && strcmp(argv[i], "--") != 0) {
      if (nin >= 64) die("too many inputs", NULL);
      char *eq = strchr(argv[i], '=');
      if (!eq) die("expected NAME=FILE.npy", argv[i]);
      *eq = '\0';
      in_names[nin] = argv[i];
      npy_read(eq + 1, &arrays[nin]);
      check(g_ort->CreateTensorWithDataAsOrtValue(mem, arrays[nin].data, arrays[nin].count * arrays[nin].elem_size,
                                                  arrays[nin].shape, arrays[nin].ndim, arrays[nin].type,
                                                  &in_vals[nin]),
            "CreateTensorWithDataAsOrtValue");
      nin++;
      i++;
    }
    i++; /* skip "--" */
    OrtValue **outs = calloc(nout, sizeof(OrtValue *));
    check(g_ort->Run(sess, NULL, in_names, (const OrtValue *const *)in_vals, nin, (const char *const *)out_names,
                     nout, outs),
          "Run");
    for (size_t k = 0; k < nout; k++) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s.%s.npy", argv[3], id, out_names[k]);
      npy_write(path, outs[k]);
      g_ort->ReleaseValue(outs[k]);
    }
    free(outs);
    for (size_t k = 0; k < nin; k++) {
      g_ort->ReleaseValue(in_vals[k]);
      free(arrays[k].data);
    }
    samples++;
  }
  printf("{\"api_version\": %d, \"samples\": %d, \"peak_rss_kb\": %ld}\n", ORT_API_VERSION, samples, peak_rss_kb());
  return 0;
}
