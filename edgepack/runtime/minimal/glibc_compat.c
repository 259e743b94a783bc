/* Linked into the minimal ORT library so it runs on glibc 2.36 (Raspberry Pi OS / Debian 12 Bookworm).
 *
 * Built in trixie (glibc 2.41), C++ code compiled with _GNU_SOURCE calls the C23 variants __isoc23_strtol & co.
 * (GLIBC_2.38), which only differ in also accepting a "0b" prefix — never used by ORT.  Defining them here,
 * compiled as plain C11 (so the calls below bind to the old symbols), keeps the library at GLIBC_2.36.  ORT's
 * version script makes these definitions local to the library.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
/* no <math.h>: fmodf is defined below with our own symbol binding */
#include <wchar.h>

long __isoc23_strtol(const char *s, char **e, int b) { return strtol(s, e, b); }
long long __isoc23_strtoll(const char *s, char **e, int b) { return strtoll(s, e, b); }
unsigned long __isoc23_strtoul(const char *s, char **e, int b) { return strtoul(s, e, b); }
unsigned long long __isoc23_strtoull(const char *s, char **e, int b) { return strtoull(s, e, b); }
intmax_t __isoc23_strtoimax(const char *s, char **e, int b) { return strtoimax(s, e, b); }
uintmax_t __isoc23_strtoumax(const char *s, char **e, int b) { return strtoumax(s, e, b); }
long __isoc23_wcstol(const wchar_t *s, wchar_t **e, int b) { return wcstol(s, e, b); }
unsigned long __isoc23_wcstoul(const wchar_t *s, wchar_t **e, int b) { return wcstoul(s, e, b); }
long long __isoc23_wcstoll(const wchar_t *s, wchar_t **e, int b) { return wcstoll(s, e, b); }
unsigned long long __isoc23_wcstoull(const wchar_t *s, wchar_t **e, int b) { return wcstoull(s, e, b); }
int __isoc23_vsscanf(const char *s, const char *f, va_list ap) { return vsscanf(s, f, ap); }
int __isoc23_sscanf(const char *s, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  int r = vsscanf(s, f, ap);
  va_end(ap);
  return r;
}

/* glibc 2.38 also gave fmod and fmodf new symbol versions (GLIBC_2.38, errno handling only); bind ORT's calls
 * to the original ones so libm from glibc 2.17+ satisfies them. */
#if defined(__x86_64__)
__asm__(".symver __edgepack_fmodf_old,fmodf@GLIBC_2.2.5");
__asm__(".symver __edgepack_fmod_old,fmod@GLIBC_2.2.5");
#elif defined(__aarch64__)
__asm__(".symver __edgepack_fmodf_old,fmodf@GLIBC_2.17");
__asm__(".symver __edgepack_fmod_old,fmod@GLIBC_2.17");
#endif
float __edgepack_fmodf_old(float x, float y);
double __edgepack_fmod_old(double x, double y);
float fmodf(float x, float y) { return __edgepack_fmodf_old(x, y); }
double fmod(double x, double y) { return __edgepack_fmod_old(x, y); }
