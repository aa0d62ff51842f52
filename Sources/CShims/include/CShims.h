// CShims: the few things Swift cannot import from the kernel and libc headers.
// `_IO*` ioctl numbers are function-like macros, which the Clang importer drops; they are exported
// here as constants. Syscalls without a glibc wrapper on Debian 12 (openat2, mount_setattr,
// pidfd_open) get small wrappers. Every symbol is prefixed `img_`.
#pragma once

#include <stdint.h>
#include <sys/types.h>
#include <linux/loop.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <linux/btrfs.h>
#include <linux/magic.h>

// Loop devices (linux/loop.h). struct loop_config and loop_info64 import as they are.
static const unsigned long img_LOOP_CTL_GET_FREE = LOOP_CTL_GET_FREE;
static const unsigned long img_LOOP_CONFIGURE = LOOP_CONFIGURE;
static const unsigned long img_LOOP_CLR_FD = LOOP_CLR_FD;
static const unsigned long img_LOOP_GET_STATUS64 = LOOP_GET_STATUS64;
static const unsigned long img_LOOP_SET_STATUS64 = LOOP_SET_STATUS64;
static const uint32_t img_LO_FLAGS_READ_ONLY = LO_FLAGS_READ_ONLY;
static const uint32_t img_LO_FLAGS_AUTOCLEAR = LO_FLAGS_AUTOCLEAR;
static const uint32_t img_LO_FLAGS_PARTSCAN = LO_FLAGS_PARTSCAN;
static const uint32_t img_LO_FLAGS_DIRECT_IO = LO_FLAGS_DIRECT_IO;

// Block devices (linux/fs.h).
static const unsigned long img_BLKGETSIZE64 = BLKGETSIZE64;
static const unsigned long img_BLKSSZGET = BLKSSZGET;
static const unsigned long img_BLKROSET = BLKROSET;
static const unsigned long img_BLKROGET = BLKROGET;
static const unsigned long img_BLKFLSBUF = BLKFLSBUF;

// Inode flags (chattr) and reflink (linux/fs.h).
static const unsigned long img_FS_IOC_GETFLAGS = FS_IOC_GETFLAGS;
static const unsigned long img_FS_IOC_SETFLAGS = FS_IOC_SETFLAGS;
static const int img_FS_IMMUTABLE_FL = FS_IMMUTABLE_FL;
static const int img_FS_NOCOW_FL = FS_NOCOW_FL;
static const unsigned long img_FICLONE = FICLONE;

// btrfs (linux/btrfs.h): only what libbtrfsutil does not cover.
static const unsigned long img_BTRFS_IOC_QGROUP_LIMIT = BTRFS_IOC_QGROUP_LIMIT;
static const unsigned long img_BTRFS_IOC_QUOTA_CTL = BTRFS_IOC_QUOTA_CTL;
static const long img_BTRFS_SUPER_MAGIC = BTRFS_SUPER_MAGIC;

/// openat2(2): glibc 2.36 has no wrapper. Used with RESOLVE_IN_ROOT / RESOLVE_BENEATH so that
/// symlinks inside an image cannot lead a path out of it. Returns -1 and sets errno on failure.
int img_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);

/// mount_setattr(2): glibc 2.36 has no wrapper. Returns -1 and sets errno on failure.
int img_mount_setattr(int dirfd, const char *path, unsigned int flags,
                      uint64_t attr_set, uint64_t attr_clr, uint64_t propagation, uint64_t userns_fd);

/// pidfd_open(2). Returns -1 and sets errno on failure.
int img_pidfd_open(pid_t pid, unsigned int flags);

/// errno of the calling thread (Swift's Glibc exposes it, but reading it through a function keeps
/// the value from being clobbered between the failing call and the read in optimised code).
int img_errno(void);

/// The child's exit code or terminating signal from a wait status (WIFEXITED & co are macros).
int img_wifexited(int status);
int img_wexitstatus(int status);
int img_wifsignaled(int status);
int img_wtermsig(int status);

// File-level calls for the image store (renameat2, OFD locks, xattrs, statx, copy_file_range).
#include "CShimsFiles.h"

// btrfs filesystem info (the fsid names /sys/fs/btrfs/<fsid>/ for qgroup limits).
static const unsigned long img_BTRFS_IOC_FS_INFO = BTRFS_IOC_FS_INFO;

// The container child of `imagectl run` (clone, namespaces, mounts, pivot_root, exec).
#include "CShimsContainer.h"

// The container's device allow list as a cgroup v2 device BPF program.
#include "CShimsDevices.h"

// `imagectl shell`: a process joining a running container's namespaces.
#include "CShimsEnter.h"

// Pseudo-terminal pairs (the console of `imagectl vm`).
#include "CShimsTerminal.h"

// sd_notify datagrams of `imagectl run`: the container's /run/host/notify and $NOTIFY_SOCKET.
#include "CShimsNotify.h"

// Network namespaces for the Netlink module (setns/unshare with CLONE_NEWNET, per thread).
#include "CShimsNamespaces.h"

// Helpers started in a mount namespace of their own (VMRunner's virtiofsd).
#include "CShimsSpawn.h"
