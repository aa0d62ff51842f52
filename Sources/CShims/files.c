#define _GNU_SOURCE
#include "CShimsFiles.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

const int img_O_PATH = O_PATH;
const int img_F_OFD_GETLK = F_OFD_GETLK;
const int img_F_OFD_SETLK = F_OFD_SETLK;
const int img_F_OFD_SETLKW = F_OFD_SETLKW;
const int img_AT_EMPTY_PATH = AT_EMPTY_PATH;
const int img_XATTR_CREATE = XATTR_CREATE;
const int img_XATTR_REPLACE = XATTR_REPLACE;

int img_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

int64_t img_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, uint64_t len) {
    loff_t in = off_in ? *off_in : 0, out = off_out ? *off_out : 0;
    ssize_t n = copy_file_range(fd_in, off_in ? &in : NULL, fd_out, off_out ? &out : NULL, (size_t)len, 0);
    if (n >= 0) {
        if (off_in) *off_in = in;
        if (off_out) *off_out = out;
    }
    return n;
}

int img_statx_btime(int dirfd, const char *path, int flags, int64_t *sec, uint32_t *nsec) {
    struct statx stx;
    memset(&stx, 0, sizeof(stx));
    if (statx(dirfd, path, flags, STATX_BTIME, &stx) != 0) return -1;
    if (!(stx.stx_mask & STATX_BTIME)) return 1;
    *sec = stx.stx_btime.tv_sec;
    *nsec = stx.stx_btime.tv_nsec;
    return 0;
}

int img_is_mount_root(int dirfd, const char *path, int flags) {
    struct statx stx;
    memset(&stx, 0, sizeof(stx));
    if (statx(dirfd, path, flags, 0, &stx) != 0) return -1;
    if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)) {
        errno = ENOTSUP;
        return -1;
    }
    return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) ? 1 : 0;
}

int img_ofd_lock(int fd, int command, short *type, int *pid) {
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = *type;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;   // whole file
    fl.l_pid = 0;   // must be 0 for OFD locks
    int r = fcntl(fd, command, &fl);
    if (r == 0) {
        *type = fl.l_type;
        if (pid) *pid = fl.l_pid;
    }
    return r;
}

int img_syncfs(int fd) { return syncfs(fd); }
