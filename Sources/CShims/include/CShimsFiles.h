// CShimsFiles: file-level calls for the image store (locks, renames, xattrs, sparse copies) that
// Swift's Glibc module does not import. Swift's Glibc is built without _GNU_SOURCE, so GNU-only
// calls (renameat2, statx, copy_file_range) and constants (O_PATH, F_OFD_*, AT_EMPTY_PATH) are not
// visible; they are wrapped or exported here from files.c, which is compiled with _GNU_SOURCE.
#pragma once

#include <stdint.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <sys/vfs.h>

/// O_PATH, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW, AT_EMPTY_PATH (GNU-only in glibc's headers).
extern const int img_O_PATH;
extern const int img_F_OFD_GETLK;
extern const int img_F_OFD_SETLK;
extern const int img_F_OFD_SETLKW;
extern const int img_AT_EMPTY_PATH;
/// XATTR_CREATE / XATTR_REPLACE for setxattr(2).
extern const int img_XATTR_CREATE;
extern const int img_XATTR_REPLACE;

/// renameat2(2) (glibc declares it only with _GNU_SOURCE). Returns -1 and sets errno on failure.
int img_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);

/// copy_file_range(2). Returns bytes copied, or -1 and sets errno.
int64_t img_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, uint64_t len);

/// statx(2) reduced to the birth time: returns 0 and fills sec/nsec when the filesystem records a
/// birth time, 1 when it does not, -1 with errno on failure. `flags` are AT_* flags.
int img_statx_btime(int dirfd, const char *path, int flags, int64_t *sec, uint32_t *nsec);

/// statx(2) STATX_ATTR_MOUNT_ROOT: 1 when `path` is the root of a mount (a bind mount too, which
/// st_dev cannot tell), 0 when not, -1 with errno on failure (ENOTSUP: the kernel does not say).
int img_is_mount_root(int dirfd, const char *path, int flags);

/// One record of an OFD lock request for fcntl(F_OFD_*): whole-file, read or write lock.
/// `type` is F_RDLCK, F_WRLCK or F_UNLCK; on F_OFD_GETLK it returns the conflicting type (or
/// F_UNLCK) and `pid` (always -1 for OFD locks, kept for completeness).
int img_ofd_lock(int fd, int command, short *type, int *pid);

/// syncfs(2): flushes the filesystem holding `fd` (GNU-only in glibc's headers).
int img_syncfs(int fd);
