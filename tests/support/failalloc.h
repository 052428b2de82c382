/* failalloc.h — a fault-injecting allocator for tests (SQLite's malloc tests, curl's torture
 * mode): counts the allocations the calling thread makes and fails the Nth (and, when asked,
 * every later one) while armed. A test executable gets it by linking tests/support/failalloc.c
 * with the `ld --wrap` options of tests/oom/CMakeLists.txt, which send every malloc, calloc,
 * realloc, strdup, strndup, aligned_alloc, posix_memalign, asprintf, vasprintf and realpath made
 * from the objects and static libraries of that executable (sr_core ... sr_ops) to the __wrap_
 * functions here. Avro C allocates through schemas/'s capped allocator, whose realloc is wrapped
 * too (sr_failalloc_exempt_avro takes it out); Jansson can be routed through them
 * (sr_failalloc_hook_jansson). Other libraries (RocksDB's C++ new, OpenBLAS, libcurl, libc's
 * own stdio buffers) are not covered.
 * Threads: the counter and the armed state are per thread, so allocations on other threads
 * (RocksDB compaction, BLAS workers) are never counted or failed and a run is deterministic. */
#ifndef SR_FAILALLOC_H
#define SR_FAILALLOC_H

#include <stdbool.h>

/* Starts counting this thread's allocations from 0; the nth one (1-based) fails, and with
 * `persist` every one after it too. n == 0 counts without failing. */
void sr_failalloc_arm(long n, bool persist);
/* Stops failing and counting; returns the allocations counted since sr_failalloc_arm. */
long sr_failalloc_disarm(void);
/* Allocations failed since sr_failalloc_arm. */
long sr_failalloc_failed(void);
/* Called at each injected failure: set a debugger's breakpoint here. */
void sr_failalloc_fail_here(void);
/* Routes Jansson's allocator (json_set_alloc_funcs) through the counted one. Call before the
 * first JSON value is made. */
void sr_failalloc_hook_jansson(void);
/* Gives Avro C an uncounted allocator, replacing schemas/'s (call after the first Avro
 * encoder or decoder was made, which installs that one): Avro C's allocations are then never
 * failed. */
void sr_failalloc_exempt_avro(void);

#endif /* SR_FAILALLOC_H */
