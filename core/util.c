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

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard Hinnant's
 * days_from_civil), so no timegm and no TZ dependence. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Reads exactly n digits at *p. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

sr_err_t sr_time_parse(const char *s, int64_t *epoch_ms, struct sr_error *err)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s ? s : "";
    int Y, M, D, h = 0, m = 0, sec = 0, ms = 0;
    if (!digits(&p, 4, &Y) || *p++ != '-' || !digits(&p, 2, &M) || *p++ != '-' ||
        !digits(&p, 2, &D))
        return sr_error_set(err, SR_EINVAL, "'%s' is not a time (YYYY-MM-DD[THH:MM[:SS[.fff]]]"
                            "[Z|+HH:MM])", s ? s : "");
    if (M < 1 || M > 12)
        return sr_error_set(err, SR_EINVAL, "'%s': month %d is not 1..12", s, M);
    bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    int dmax = mdays[M - 1] + (M == 2 && leap);
    if (D < 1 || D > dmax)
        return sr_error_set(err, SR_EINVAL, "'%s': day %d is not 1..%d", s, D, dmax);
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &m))
            return sr_error_set(err, SR_EINVAL, "'%s': bad time of day (HH:MM[:SS[.fff]])", s);
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &sec))
                return sr_error_set(err, SR_EINVAL, "'%s': bad seconds", s);
            if (*p == '.') {
                p++;
                int nd = 0;
                for (; *p >= '0' && *p <= '9'; p++, nd++)
                    if (nd < 3)
                        ms = ms * 10 + (*p - '0');
                if (nd == 0)
                    return sr_error_set(err, SR_EINVAL, "'%s': bad fraction of a second", s);
                for (; nd < 3; nd++)
                    ms *= 10;
            }
        }
        if (h > 23 || m > 59 || sec > 60) /* 60: a leap second, as RFC 3339 allows */
            return sr_error_set(err, SR_EINVAL, "'%s': %02d:%02d:%02d is not a time of day", s, h,
                                m, sec);
    }
    int zone_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, zh, zm = 0;
        if (!digits(&p, 2, &zh) || (*p == ':' && (p++, !digits(&p, 2, &zm))) || zh > 23 || zm > 59)
            return sr_error_set(err, SR_EINVAL, "'%s': bad zone (Z, +HH:MM or -HH:MM)", s);
        zone_min = sign * (zh * 60 + zm);
    }
    if (*p)
        return sr_error_set(err, SR_EINVAL, "'%s': unexpected '%s'", s, p);
    int64_t secs = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + m * 60 + sec -
                   (int64_t)zone_min * 60;
    *epoch_ms = secs * 1000 + ms;
    return SR_OK;
}
