// glibc >= 2.34 has no malloc hooks; defining malloc in the executable interposes it for every shared library
// (Swift runtime, Foundation, OpenBLAS), and __libc_* reach the real allocator. Counting is per thread (TLS in
// the executable is static, so reading it never allocates) so that tests running in parallel do not interfere.
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include "alloc_counter.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern void __libc_free(void *);

static _Thread_local int counting;
static _Thread_local int64_t calls, bytes;
static _Atomic int counting_all;
static _Atomic int64_t calls_all;

static inline void note(size_t n) {
    if (counting > 0) { calls++; bytes += (int64_t)n; }
    if (counting_all > 0) calls_all++;
}

void oreo_alloc_count_begin(void) { calls = 0; bytes = 0; counting = 1; }
int64_t oreo_alloc_count_end(void) { counting = 0; return calls; }
int64_t oreo_alloc_count_bytes(void) { return bytes; }
void oreo_alloc_count_pause(void) { counting = -counting; counting_all = -counting_all; }
void oreo_alloc_count_resume(void) { counting = -counting; counting_all = -counting_all; }
void oreo_alloc_count_all_begin(void) { calls_all = 0; counting_all = 1; }
int64_t oreo_alloc_count_all_end(void) { counting_all = 0; return calls_all; }

void *malloc(size_t n) { note(n); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(a * b); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(n); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t al, size_t n) { note(n); return __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { note(n); return __libc_memalign(al, n); }
void *valloc(size_t n) { note(n); return __libc_valloc(n); }
void *pvalloc(size_t n) { note(n); return __libc_pvalloc(n); }
int posix_memalign(void **out, size_t al, size_t n) {
    note(n);
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
