/* log.c — one line per event of interest: "ts level component msg k=v...", to stderr.
 * The level is process-wide; a mutex keeps lines whole when several threads log. */
#include "sr_core.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static sr_log_level_t log_level = SR_LOG_INFO;

static const char *const level_name[] = {"debug", "info", "warn", "error", "off"};

void sr_log_set_level(sr_log_level_t level) { __atomic_store_n(&log_level, level, __ATOMIC_RELAXED); }
sr_log_level_t sr_log_get_level(void) { return __atomic_load_n(&log_level, __ATOMIC_RELAXED); }

sr_err_t sr_log_level_parse(const char *s, sr_log_level_t *out)
{
    for (int i = 0; i <= SR_LOG_OFF; i++) {
        if (s && strcmp(s, level_name[i]) == 0) {
            *out = (sr_log_level_t)i;
            return SR_OK;
        }
    }
    return SR_EINVAL;
}

void sr_log(sr_log_level_t level, const char *component, const char *msg, const char *kv, ...)
{
    if (level < sr_log_get_level() || level >= SR_LOG_OFF)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s %s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_name[level],
                     component ? component : "-", msg ? msg : "");
    if (kv && kv[0] && n > 0 && (size_t)n < sizeof line - 1) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, kv);
        vsnprintf(line + n, sizeof line - (size_t)n, kv, ap);
        va_end(ap);
    }
    pthread_mutex_lock(&log_mu);
    fprintf(stderr, "%s\n", line);
    pthread_mutex_unlock(&log_mu);
}
