/* util.c — clocks and whole-file reads shared by every layer. */
#include "sr_core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t sr_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int64_t sr_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

sr_err_t sr_file_read_all(const char *path, char **out, size_t *len, struct sr_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sr_error_set(err, errno == ENOENT ? SR_ENOENT : SR_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    int ferr = ferror(f);
    fclose(f);
    if (!buf)
        return sr_error_set(err, SR_ENOMEM, "%s: out of memory reading file", path);
    if (ferr) {
        free(buf);
        return sr_error_set(err, SR_EIO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return SR_OK;
}
