// Signals and capabilities of imagectl's own process around a container: forwarding SIGTERM and
// SIGINT to the container's PID 1 through its pidfd (the first as the kill signal, with a byte
// to imagectl's watchdog that SIGKILLs PID 1 when the stop timeout passes; any further one as
// SIGKILL at once), and what glibc hides behind macros.
#define _GNU_SOURCE
#include "CShimsContainer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t forward_pidfd = -1;
static volatile sig_atomic_t forward_signal = SIGKILL;
static volatile sig_atomic_t forward_wake = -1;
static volatile sig_atomic_t forwarded = 0;

/// Runs on whichever thread the kernel picks; only async-signal-safe calls (send(2) with
/// MSG_NOSIGNAL: a watchdog that already ended must not turn the write into a SIGPIPE).
static void forward_handler(int sig) {
    (void)sig;
    if (forward_pidfd < 0) return;
    int saved = errno;
    if (forwarded) {
        // A second SIGTERM/SIGINT: the user (or service manager) does not want to wait.
        (void)syscall(SYS_pidfd_send_signal, (int)forward_pidfd, SIGKILL, NULL, 0);
    } else {
        forwarded = 1;
        (void)syscall(SYS_pidfd_send_signal, (int)forward_pidfd, (int)forward_signal, NULL, 0);
        if (forward_wake >= 0) {
            char byte = 1;
            (void)send((int)forward_wake, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
    }
    errno = saved;
}

void img_container_forward_stop(void) { forward_pidfd = -1; }

int img_container_forward_signals(int pidfd, int kill_signal, int wake_fd) {
    forward_pidfd = pidfd;
    forward_signal = kill_signal;
    forward_wake = wake_fd;
    forwarded = 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward_handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGTERM, &action, NULL) < 0 || sigaction(SIGINT, &action, NULL) < 0) return -1;
    // A caller may start imagectl with these signals blocked (the mask is inherited over exec):
    // unblock them in this thread, which then waits for the container and takes them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0 ? 0 : -1;
}

int img_container_signal_forwarded(void) { return forwarded; }

int img_pidfd_send_signal(int pidfd, int signal) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0);
}

int img_sigrtmin(void) { return SIGRTMIN; }

int img_cap_last_cap(void) {
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[16];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            int value = 0;
            for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) value = value * 10 + (buf[i] - '0');
            if (value > 0 && value < 64) return value;
        }
    }
    return CAP_LAST_CAP;
}
