#define _GNU_SOURCE
#include "CShims.h"
#include <errno.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int img_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how = { .flags = flags, .mode = mode, .resolve = resolve };
    long fd;
    // EAGAIN: with RESOLVE_IN_ROOT/BENEATH a ".." raced with a mount or rename anywhere on the
    // system, and the kernel asks for a retry (openat2(2)); a busy machine mounting in parallel
    // made a plain "../bin/busybox" link look missing.
    int tries = 0;
    do { fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how)); } while (fd < 0 && (errno == EINTR || (errno == EAGAIN && ++tries < 1000)));
    return (int)fd;
}

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

struct img_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };

int img_mount_setattr(int dirfd, const char *path, unsigned int flags,
                      uint64_t attr_set, uint64_t attr_clr, uint64_t propagation, uint64_t userns_fd) {
    struct img_mount_attr attr = { attr_set, attr_clr, propagation, userns_fd };
    return (int)syscall(SYS_mount_setattr, dirfd, path, flags, &attr, sizeof(attr));
}

int img_pidfd_open(pid_t pid, unsigned int flags) {
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

int img_errno(void) { return errno; }
int img_wifexited(int status) { return WIFEXITED(status); }
int img_wexitstatus(int status) { return WEXITSTATUS(status); }
int img_wifsignaled(int status) { return WIFSIGNALED(status); }
int img_wtermsig(int status) { return WTERMSIG(status); }
