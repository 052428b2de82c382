/* test_sd_notify.c — the sd_notify datagrams, byte for byte, as systemd's manager receives
 * them: a unix datagram socket bound at a path and at an abstract name stands in for
 * $NOTIFY_SOCKET. Also the unsupervised case (no socket: 0, nothing sent), unusable sockets
 * (an error value, never a crash), and $WATCHDOG_USEC / $WATCHDOG_PID parsing.
 * Thread: the test's only thread. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sd_notify.h"

struct listener {
    int fd;
    char path[108];
};

/* Binds a datagram socket at name ("@x" abstract, else a path) and points NOTIFY_SOCKET at it. */
static void listen_at(struct listener *l, const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    assert_true(n < sizeof sa.sun_path);
    memcpy(sa.sun_path, name, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (name[0] == '@')
        sa.sun_path[0] = 0;
    else
        len++;
    l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(l->fd >= 0);
    if (name[0] != '@')
        unlink(name);
    assert_int_equal(bind(l->fd, (struct sockaddr *)&sa, len), 0);
    snprintf(l->path, sizeof l->path, "%s", name);
    assert_int_equal(setenv("NOTIFY_SOCKET", name, 1), 0);
}

static void listen_close(struct listener *l)
{
    close(l->fd);
    if (l->path[0] != '@')
        unlink(l->path);
    unsetenv("NOTIFY_SOCKET");
}

/* The next datagram, NUL-terminated, or "" when none is waiting. */
static const char *next_datagram(struct listener *l)
{
    static char buf[2048];
    ssize_t n = recv(l->fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = 0;
    return buf;
}

static void every_message(struct listener *l)
{
    assert_int_equal(sr_notify_ready("joined group streamrec, 3 partitions"), 1);
    assert_string_equal(next_datagram(l), "READY=1\nSTATUS=joined group streamrec, 3 partitions");
    assert_int_equal(sr_notify_ready(NULL), 1);
    assert_string_equal(next_datagram(l), "READY=1");
    assert_int_equal(sr_notify_status("restoring partitions 0,2"), 1);
    assert_string_equal(next_datagram(l), "STATUS=restoring partitions 0,2");
    assert_int_equal(sr_notify_watchdog(), 1);
    assert_string_equal(next_datagram(l), "WATCHDOG=1");
    assert_int_equal(sr_notify_stopping(), 1);
    assert_string_equal(next_datagram(l), "STOPPING=1");

    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t before = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    assert_int_equal(sr_notify_reloading(), 1);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t after = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    const char *d = next_datagram(l);
    uint64_t usec = 0;
    char tail = 0;
    assert_int_equal(sscanf(d, "RELOADING=1\nMONOTONIC_USEC=%" SCNu64 "%c", &usec, &tail), 1);
    assert_true(usec >= before && usec <= after);
    assert_string_equal(next_datagram(l), ""); /* one datagram per call, nothing more */
}

static void test_path_socket(void **state)
{
    (void)state;
    struct listener l;
    char name[64];
    snprintf(name, sizeof name, "/tmp/sr-notify-%d.sock", (int)getpid());
    listen_at(&l, name);
    every_message(&l);
    listen_close(&l);
}

static void test_abstract_socket(void **state)
{
    (void)state;
    struct listener l;
    char name[64];
    snprintf(name, sizeof name, "@sr-notify-test-%d", (int)getpid());
    listen_at(&l, name);
    every_message(&l);
    listen_close(&l);
}

/* A status cannot smuggle in another assignment ("READY=1" on a line of its own). */
static void test_status_newlines(void **state)
{
    (void)state;
    struct listener l;
    char name[64];
    snprintf(name, sizeof name, "@sr-notify-nl-%d", (int)getpid());
    listen_at(&l, name);
    assert_int_equal(sr_notify_status("bad\nREADY=1\r\nx"), 1);
    assert_string_equal(next_datagram(&l), "STATUS=bad READY=1  x");
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(sr_notify_ready(big), 1); /* truncated to fit, still one datagram */
    const char *d = next_datagram(&l);
    assert_memory_equal(d, "READY=1\nSTATUS=aaa", 18);
    assert_true(strlen(d) < 1024);
    listen_close(&l);
}

static void test_unsupervised_and_broken(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sr_notify_ready("x"), 0);
    assert_int_equal(sr_notify_watchdog(), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(sr_notify_stopping(), 0);
    setenv("NOTIFY_SOCKET", "/nonexistent-dir/notify.sock", 1);
    assert_int_equal(sr_notify_watchdog(), -ENOENT);
    setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
    assert_int_equal(sr_notify_ready(NULL), -EAFNOSUPPORT);
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[0] = '/';
    longname[sizeof longname - 1] = 0;
    setenv("NOTIFY_SOCKET", longname, 1);
    assert_int_equal(sr_notify_watchdog(), -ENAMETOOLONG);
    unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog_usec(void **state)
{
    (void)state;
    uint64_t v = 7;
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    assert_int_equal(sr_notify_watchdog_usec(&v), 0);
    assert_int_equal(v, 7);
    setenv("WATCHDOG_USEC", "30000000", 1);
    assert_int_equal(sr_notify_watchdog_usec(&v), 1);
    assert_int_equal(v, 30000000);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    v = 0;
    assert_int_equal(sr_notify_watchdog_usec(&v), 1);
    assert_int_equal(v, 30000000);
    snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    v = 7;
    assert_int_equal(sr_notify_watchdog_usec(&v), 0); /* meant for another process */
    assert_int_equal(v, 7);
    setenv("WATCHDOG_PID", "12x", 1);
    assert_int_equal(sr_notify_watchdog_usec(&v), -EINVAL);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "abc", 1);
    assert_int_equal(sr_notify_watchdog_usec(&v), -EINVAL);
    setenv("WATCHDOG_USEC", "-5", 1);
    assert_int_equal(sr_notify_watchdog_usec(&v), -EINVAL);
    setenv("WATCHDOG_USEC", "0", 1);
    assert_int_equal(sr_notify_watchdog_usec(&v), -EINVAL);
    unsetenv("WATCHDOG_USEC");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_status_newlines),
        cmocka_unit_test(test_unsupervised_and_broken),
        cmocka_unit_test(test_watchdog_usec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
