/* sd_notify.c — the datagram side of systemd's notification protocol (sd_notify(3)): one
 * AF_UNIX SOCK_DGRAM message of newline-separated KEY=VALUE assignments to $NOTIFY_SOCKET, a
 * filesystem path or, when it starts with '@', an abstract socket name. Written here rather
 * than linked from libsystemd so the binary and the container need no extra library
 * (DESIGN §7). Owns no state; each call opens, sends and closes its own socket.
 * Thread: any (no shared state; getenv only). */
#include "sd_notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Sends msg (len bytes) to $NOTIFY_SOCKET; see sd_notify.h for the return values. */
static int notify_send(const char *msg, size_t len)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t plen = strlen(path);
    if (path[0] != '/' && path[0] != '@')
        return -EAFNOSUPPORT; /* e.g. systemd's vsock: addresses, for VMs only */
    if (plen >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, plen);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    if (path[0] == '@')
        sa.sun_path[0] = 0; /* abstract: no terminating NUL counted */
    else
        salen++;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    ssize_t n = sendto(fd, msg, len, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int rc = n < 0 ? -errno : (size_t)n == len ? 1 : -EMSGSIZE;
    close(fd);
    return rc;
}

/* Appends "STATUS=<s>" to buf (at *len, capacity cap) with newlines turned into spaces, so a
 * status cannot inject another assignment; truncated to fit. */
static void append_status(char *buf, size_t *len, size_t cap, const char *s)
{
    static const char key[] = "STATUS=";
    if (*len + sizeof key >= cap)
        return;
    memcpy(buf + *len, key, sizeof key - 1);
    *len += sizeof key - 1;
    for (; *s && *len + 1 < cap; s++)
        buf[(*len)++] = *s == '\n' || *s == '\r' ? ' ' : *s;
    buf[*len] = 0;
}

int sr_notify_ready(const char *status)
{
    char buf[1024] = "READY=1";
    size_t len = strlen(buf);
    if (status) {
        buf[len++] = '\n';
        append_status(buf, &len, sizeof buf, status);
    }
    return notify_send(buf, len);
}

int sr_notify_status(const char *status)
{
    char buf[1024];
    size_t len = 0;
    append_status(buf, &len, sizeof buf, status ? status : "");
    return notify_send(buf, len);
}

int sr_notify_watchdog(void) { return notify_send("WATCHDOG=1", 10); }

int sr_notify_stopping(void) { return notify_send("STOPPING=1", 10); }

int sr_notify_reloading(void)
{
    /* MONOTONIC_USEC lets systemd (Type=notify-reload, v253+) match the reload to this
     * message; older managers ignore the unknown assignment. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
                     (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    return notify_send(buf, (size_t)n);
}

/* Parses a decimal unsigned integer filling the whole string; false when it is not one. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return 0;
    *out = v;
    return 1;
}

int sr_notify_watchdog_usec(uint64_t *out)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (!usec || !*usec)
        return 0;
    uint64_t v, p;
    if (!parse_u64(usec, &v) || v == 0)
        return -EINVAL;
    if (pid && *pid) {
        if (!parse_u64(pid, &p) || p == 0)
            return -EINVAL;
        if (p != (uint64_t)getpid())
            return 0; /* set for another process (a parent that exec'd us is another pid) */
    }
    *out = v;
    return 1;
}
