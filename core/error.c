/* error.c — sr_err_t texts and the caller-provided sr_error context (code + one-line message).
 * Owns nothing beyond the caller's struct; thread-safe (no shared state). */
#include "sr_core.h"

#include <stdio.h>
#include <string.h>

static const char *const err_text[] = {
#define SR__ERR_TEXT(name, text) text,
    SR_ERRNO_MAP(SR__ERR_TEXT)
#undef SR__ERR_TEXT
};

static const char *const err_name[] = {
#define SR__ERR_NAME(name, text) #name,
    SR_ERRNO_MAP(SR__ERR_NAME)
#undef SR__ERR_NAME
};

const char *sr_err_str(sr_err_t code)
{
    if ((unsigned)code >= SR__ERR_COUNT)
        return "unknown error";
    return err_text[code];
}

const char *sr_err_name(sr_err_t code)
{
    if ((unsigned)code >= SR__ERR_COUNT)
        return "EUNKNOWN";
    return err_name[code];
}

sr_err_t sr_error_vset(struct sr_error *err, sr_err_t code, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    if (fmt)
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    else
        snprintf(err->msg, sizeof err->msg, "%s", sr_err_str(code));
    return code;
}

sr_err_t sr_error_set(struct sr_error *err, sr_err_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sr_error_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

sr_err_t sr_error_prefix(struct sr_error *err, const char *fmt, ...)
{
    if (!err)
        return SR_OK;
    char prefix[SR_ERROR_MSG_MAX];
    char old[SR_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strnlen(prefix, sizeof prefix - 1);
    if (n + 2 >= sizeof err->msg)
        n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof err->msg - n - 2;
    size_t ol = strnlen(old, room - 1);
    memcpy(err->msg + n + 2, old, ol);
    err->msg[n + 2 + ol] = '\0';
    return err->code;
}

void sr_error_clear(struct sr_error *err)
{
    if (!err)
        return;
    err->code = SR_OK;
    err->msg[0] = '\0';
}
