/* failalloc.c — the counted, failing allocator of failalloc.h. Each __wrap_X asks
 * should_fail() and either returns the failure of X (NULL, ENOMEM, -1) or calls __real_X, so
 * memory still comes from libc (or from ASan's interceptors in a sanitizer build) and is freed
 * with free() as usual. The state is thread-local: only the arming thread is counted. */
#define _GNU_SOURCE
#include "failalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <avro.h>
#include <jansson.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
int __real_posix_memalign(void **out, size_t align, size_t n);
int __real_vasprintf(char **out, const char *fmt, va_list ap);
char *__real_realpath(const char *path, char *resolved);

static _Thread_local bool armed;
static _Thread_local bool persist_;
static _Thread_local long target, count, failed;

void sr_failalloc_arm(long n, bool persist)
{
    target = n;
    persist_ = persist;
    count = failed = 0;
    armed = true;
}

long sr_failalloc_disarm(void)
{
    armed = false;
    return count;
}

long sr_failalloc_failed(void) { return failed; }

/* Called at each injected failure: a debugger's breakpoint (`break sr_failalloc_fail_here`). */
__attribute__((noinline)) void sr_failalloc_fail_here(void) { __asm__ volatile(""); }

static bool should_fail(void)
{
    if (!armed)
        return false;
    count++;
    if (target > 0 && (count == target || (persist_ && count > target))) {
        failed++;
        sr_failalloc_fail_here();
        return true;
    }
    return false;
}

void *__wrap_malloc(size_t n)
{
    return should_fail() ? (errno = ENOMEM, NULL) : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return should_fail() ? (errno = ENOMEM, NULL) : __real_calloc(n, size);
}

/* realloc(p, 0) frees; it is not an allocation and never fails. */
void *__wrap_realloc(void *p, size_t n)
{
    if (n > 0 && should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return should_fail() ? (errno = ENOMEM, NULL) : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return should_fail() ? (errno = ENOMEM, NULL) : __real_strndup(s, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    return should_fail() ? (errno = ENOMEM, NULL) : __real_aligned_alloc(align, n);
}

int __wrap_posix_memalign(void **out, size_t align, size_t n)
{
    return should_fail() ? ENOMEM : __real_posix_memalign(out, align, n);
}

int __wrap_vasprintf(char **out, const char *fmt, va_list ap)
{
    if (should_fail()) {
        errno = ENOMEM;
        return -1; /* *out is undefined on failure, as glibc says */
    }
    return __real_vasprintf(out, fmt, ap);
}

int __wrap_asprintf(char **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = __wrap_vasprintf(out, fmt, ap);
    va_end(ap);
    return rc;
}

/* realpath(p, NULL) allocates inside libc; with a caller's buffer it does not. */
char *__wrap_realpath(const char *path, char *resolved)
{
    if (!resolved && should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_realpath(path, resolved);
}

/* Jansson lives in a shared library, which --wrap cannot reach: its allocator hook calls the
 * wrapped malloc instead. */
static void *json_alloc(size_t n) { return __wrap_malloc(n); }

void sr_failalloc_hook_jansson(void) { json_set_alloc_funcs(json_alloc, free); }

/* Avro C's default allocator, uncounted. */
static void *avro_alloc_real(void *ud, void *p, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(p);
        return NULL;
    }
    return __real_realloc(p, nsize);
}

void sr_failalloc_exempt_avro(void) { avro_set_allocator(avro_alloc_real, NULL); }
