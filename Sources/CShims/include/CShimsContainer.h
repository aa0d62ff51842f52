// CShimsContainer: the container child of `imagectl run`.
//
// Process model (ARCHITECTURE.md "Processes and threads"): imagectl is a multi-threaded Swift
// process, and unshare(2)/setns(2)/pivot_root(2) are unsafe there, and a fork() of it may deadlock
// on locks held by other threads. So the container is a C child made by clone(2) with new mount,
// PID, UTS, IPC (and network) namespaces. The child only makes system calls: no malloc, no stdio,
// no locks; everything it needs (paths, argv, environment, ids, capability mask, the seccomp BPF
// program) is prepared by the Swift parent in the plain struct below before clone(). All
// privileged mount steps of a container live in container.c and nowhere else.
#pragma once

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/// cgroup layout of the host, decided by the parent from /proc/self/cgroup.
enum img_cgroup_layout {
    /// cgroup v1 controllers, a named "systemd" v1 hierarchy, and (hybrid) a v2 tree at "unified".
    IMG_CGROUP_LEGACY = 0,
    /// Only cgroup v2, mounted at /sys/fs/cgroup.
    IMG_CGROUP_UNIFIED = 1,
};

/// Kinds of extra mounts (--bind, --tmpfs, --overlay).
enum img_mount_kind {
    IMG_MOUNT_BIND = 0,
    IMG_MOUNT_TMPFS = 1,
    IMG_MOUNT_OVERLAY = 2,
};

/// One extra mount, made after the API file systems. Every path marked "in root" and every
/// target is resolved beneath the container root (openat2 RESOLVE_IN_ROOT); the others are host
/// paths opened before pivot_root.
struct img_container_mount {
    enum img_mount_kind kind;
    /// Absolute path inside the container.
    const char *target;
    /// BIND: the source, a host path or (source_in_root) a path inside the container.
    const char *source;
    int source_in_root;
    /// BIND: MS_REC (rbind, the default) or not (norbind).
    int recursive;
    /// Non-zero: read-only (recursively for an rbind).
    int read_only;
    /// TMPFS: mount(2) flags and data.
    unsigned long flags;
    const char *data;
    /// OVERLAY: lower layers, topmost first, NULL-terminated, and which are inside the root.
    const char *const *lower;
    const int *lower_in_root;
    /// OVERLAY: upper and work directory (both NULL for a read-only overlay).
    const char *upper;
    int upper_in_root;
    const char *work;
    int work_in_root;
    /// BIND in a user namespace: an ID-mapped bind with the container's user namespace (--bind's idmap).
    int idmap;
};

/// Steps for one file in the container's /etc (--resolv-conf=, --timezone=), tried in this order
/// until one works, as nspawn falls through symlink -> bind -> copy. 0: leave the file alone.
enum img_etc_step {
    IMG_ETC_SYMLINK = 1,
    IMG_ETC_BIND = 2,
    IMG_ETC_COPY = 4,
    /// Unlink the file (alone, no other step).
    IMG_ETC_DELETE = 8,
};

/// /etc/resolv.conf or /etc/localtime of the container. All paths inside the container are
/// resolved beneath its root; nothing is written through a symlink of the image.
struct img_etc_file {
    /// Bitwise enum img_etc_step; 0: off.
    int steps;
    /// COPY: replace whatever inode is there (a symlink too); otherwise only a missing file or a
    /// regular file is replaced and a symlink is left alone (nspawn's copy-* vs replace-*).
    int replace;
    /// BIND: host file bind-mounted read-only (nosuid, nodev) over the container's file.
    const char *host_path;
    /// COPY: the file's bytes, read by the parent from the host file.
    const void *contents;
    size_t size;
    /// SYMLINK: the link text (e.g. "../usr/share/zoneinfo/Etc/UTC") and the file, relative to the
    /// root, that must exist in the container for the link to be made.
    const char *link_target;
    const char *link_check;
};

/// One --rlimit=: RLIMIT_* number, soft and hard value (RLIM_INFINITY = ~0).
struct img_resource_limit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

struct img_container_config {
    /// Host path of the container's tree (-D).
    const char *directory;
    /// An empty host directory the child mounts the root on (in its own mount namespace only).
    const char *staging;
    /// Non-zero: overlayfs over `directory` with a throw-away upper layer on a tmpfs.
    int ephemeral;
    /// Non-zero: the root is mounted read-only.
    int read_only;
    /// Non-zero: a new network namespace with only the loopback interface up.
    int private_network;
    /// Non-zero: a small init is PID 1 and the payload is PID 2.
    int as_pid2;
    /// The container's host name (UTS namespace).
    const char *hostname;
    /// Payload: argv[0] is a path inside the container or a name looked up in PATH of `envp`.
    const char *const *argv;
    /// Payload environment, NULL-terminated "NAME=value" strings.
    const char *const *envp;
    /// Working directory inside the container.
    const char *working_directory;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t group_count;
    /// Capabilities kept in the bounding set (bit N = capability N).
    uint64_t capabilities;
    int no_new_privileges;
    /// A classic BPF seccomp program (struct sock_filter array) and its length in bytes; 0: none.
    const void *seccomp_program;
    size_t seccomp_program_size;
    enum img_cgroup_layout cgroup_layout;
    /// Host cgroup directories the child moves itself into before it unshares its cgroup
    /// namespace (NULL-terminated).
    const char *const *cgroup_directories;
    /// cgroup v1 controller hierarchies to mount read-only, e.g. "cpu", "cpu,cpuacct"
    /// (NULL-terminated). Only for IMG_CGROUP_LEGACY.
    const char *const *cgroup_controllers;
    /// Non-zero: mount the v2 tree at /sys/fs/cgroup/unified (hybrid). Only for IMG_CGROUP_LEGACY.
    int cgroup_hybrid;

    /* --- root sources and extra mounts --- */
    /// Extra mounts in the order to make them (parents before children).
    const struct img_container_mount *mounts;
    size_t mount_count;
    /// Non-zero (--volatile=yes): the root is a tmpfs holding only the tree's /usr, read-only.
    int volatile_root;

    /* --- process, console, limits --- */
    /// Non-zero: the payload gets a new pty of the container's devpts as controlling terminal,
    /// standard streams and /dev/console (a bind mount of the pty, as nspawn makes it); the pty's
    /// master is sent over `console_socket` (a connected AF_UNIX socket, SCM_RIGHTS).
    int console;
    int console_socket;
    /// --rlimit=: prlimit(2) of each before the payload runs (count 0: none).
    const struct img_resource_limit *resource_limits;
    size_t resource_limit_count;
    /// --oom-score-adjust=: written to /proc/self/oom_score_adj when oom_score_adjust_set.
    int oom_score_adjust_set;
    int oom_score_adjust;
    /// --cpu-affinity=: a CPU mask of `cpu_mask_words` 64-bit words (0: unchanged).
    const uint64_t *cpu_mask;
    size_t cpu_mask_words;
    /// --personality=: personality(2) persona when personality_set.
    int personality_set;
    unsigned long personality;

    /* --- /etc/resolv.conf and /etc/localtime (--resolv-conf=, --timezone=) --- */
    struct img_etc_file resolv_conf;
    struct img_etc_file localtime;

    /* --- user namespace (--private-users=) --- */
    /// Non-zero: the payload runs in the user namespace `userns_fd` (see container.c "user
    /// namespace" for who does what on which side of it).
    int userns;
    int userns_fd;
    /// Host UID/GID of the container's root (the map's base): owner of what the host side creates.
    uint32_t userns_base;
    /// Non-zero: the root is an ID-mapped mount (MOUNT_ATTR_IDMAP with userns_fd).
    int userns_idmap_root;
    /// Write end of a pipe that gets the host PID (pid_t) of the container's PID 1.
    int userns_pid_pipe;

    /* --- notify socket (sd_notify) --- */
    /// An AF_UNIX datagram socket (made by imagectl, see CShimsNotify.h) the child binds at
    /// /run/host/notify after pivot_root; the payload gets NOTIFY_SOCKET=/run/host/notify. A
    /// failed bind is not fatal (the socket stays unbound). Values below 3: none.
    int notify_socket;
};

/// What the child reports on its error pipe when a set-up step fails.
struct img_container_error {
    int error_number;
    char step[240];
};

// User namespaces (--private-users=, --bind=...:idmap).

/// Makes a user namespace with "0 base size" as its UID and GID map (a short-lived helper is
/// cloned into it; the maps are written from here) and returns an fd of it (close-on-exec), or
/// -1 with errno set.
int img_userns_create(uint32_t base, uint32_t size);

/// 0 when `path` (and every mount below it) can be ID-mapped with `userns_fd` (tried on a
/// detached clone of the tree, which is thrown away); -1 with errno set otherwise.
int img_idmap_probe(const char *path, int userns_fd);

/// An ID-mapped detached clone of the tree at `path` (open_tree OPEN_TREE_CLONE, AT_RECURSIVE
/// when `recursive`), as an fd to attach with move_mount; -1 with errno set.
int img_idmapped_tree(const char *path, int userns_fd, int recursive);

/// Starts the container child. Returns its PID (in the caller's PID namespace) and stores in
/// `*error_fd` the read end of a close-on-exec pipe: it reaches EOF when the payload was exec'd,
/// or carries one `struct img_container_error` first. Returns -1 and sets errno on failure.
pid_t img_container_start(const struct img_container_config *config, int *error_fd);

/// Installs SIGTERM and SIGINT handlers (process-wide, whatever thread receives them) that send
/// `kill_signal` once to the process behind `pidfd`. Returns -1 and sets errno on failure.
int img_container_forward_signals(int pidfd, int kill_signal);

/// Non-zero once a SIGTERM/SIGINT was forwarded.
int img_container_signal_forwarded(void);

/// pidfd_send_signal(2) (no glibc 2.36 wrapper). Returns -1 and sets errno on failure.
int img_pidfd_send_signal(int pidfd, int signal);

/// SIGRTMIN is a function call in glibc; exported as one for Swift.
int img_sigrtmin(void);

/// CAP_LAST_CAP of the running kernel from /proc/sys/kernel/cap_last_cap (or the header's value).
int img_cap_last_cap(void);
