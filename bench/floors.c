/* floors.c — this CPU's floors for exact retrieval (BENCHMARKS.md): the FP32 FMA peak, the
 * int16 (vpmaddwd + vpaddd) and int8 (vpmaddubsw + vpmaddwd + vpaddd, no VNNI) multiply-add
 * rates of one core, and the read bandwidth of a buffer of a given size. Not part of the build:
 *
 *   cc -O2 -mavx2 -mfma bench/floors.c -o /tmp/floors && /tmp/floors [bytes]
 *   /tmp/floors 12800000 & /tmp/floors 12800000; wait     (both cores at once)
 *
 * Thread: single-threaded; run one copy per core to load several. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int buf[64 * 8] __attribute__((aligned(64)));

/* 12 independent chains: enough to cover the FMA latency on both pipes */
__attribute__((noinline)) static float fma_run(long n)
{
    __m256 a[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_ps((float)i);
    for (long r = 0; r < n; r++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_fmadd_ps(a[i], m, c);
    float s = 0;
    for (int i = 0; i < 12; i++)
        s += a[i][0];
    return s;
}

__attribute__((noinline)) static int madd_run(long n, int int8)
{
    __m256i a[12], ones = _mm256_set1_epi16(1);
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_epi32(i);
    for (long r = 0; r < n; r++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) {
            __m256i e = _mm256_load_si256((const __m256i *)(buf + ((r + i / 6) & 63) * 8));
            __m256i q = _mm256_set1_epi32(buf[(r & 63) * 8 + i]);
            __m256i p = int8 ? _mm256_madd_epi16(_mm256_maddubs_epi16(e, q), ones)
                             : _mm256_madd_epi16(e, q);
            a[i] = _mm256_add_epi32(a[i], p);
        }
    int s = 0;
    for (int i = 0; i < 12; i++)
        s += _mm256_extract_epi32(a[i], 0);
    return s;
}

int main(int argc, char **argv)
{
    long n = 20000000;
    double best[3] = {0};
    float sink = 0;
    int isink = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        sink += fma_run(n);
        double g = (double)n * 12 * 8 / (now() - t0) * 1e-9;
        best[0] = g > best[0] ? g : best[0];
        for (int k = 0; k < 2; k++) {
            t0 = now();
            isink += madd_run(n, k);
            g = (double)n * 12 * (k ? 32 : 16) / (now() - t0) * 1e-9;
            best[1 + k] = g > best[1 + k] ? g : best[1 + k];
        }
    }
    printf("one core, best of 5, GMAC/s: fp32 fma %.1f (%.1f GFLOP/s), int16 madd+add %.1f, "
           "int8 maddubs+madd+add %.1f  [%g %d]\n", best[0], 2 * best[0], best[1], best[2],
           sink, isink);
    size_t bytes = argc > 1 ? (size_t)atol(argv[1]) : 25600000;
    size_t nf = bytes / 4 / 32 * 32;
    float *a = aligned_alloc(64, nf * 4 + 64);
    if (!a)
        return 1;
    for (size_t i = 0; i < nf; i++)
        a[i] = (float)i;
    double bw = 0;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int r = 0; r < 50; r++) {
        double t0 = now();
        for (size_t i = 0; i < nf; i += 32) {
            s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
            s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
            s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
            s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
        }
        double g = (double)nf * 4 / (now() - t0) * 1e-9;
        bw = g > bw ? g : bw;
    }
    s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    printf("read bandwidth, %zu-byte buffer, one core, best of 50: %.1f GB/s  [%g]\n", nf * 4, bw,
           s0[0]);
    free(a);
    return 0;
}
