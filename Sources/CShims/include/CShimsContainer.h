// CShimsContainer: the container child of `imagectl run`.
//
// Process model (ARCHITECTURE.md "Processes and threads"): imagectl is a multi-threaded Swift
// process, and unshare(2)/setns(2)/pivot_root(2) are unsafe there, and a fork() of it may deadlock
// on locks held by other threads. So the container is a C child made by clone(2) with new mount,
// PID, UTS, IPC (and network) namespaces. The child only makes system calls: no malloc, no stdio,
// no locks; everything it needs (paths, argv, environment, ids, capability mask, the seccomp BPF
// program, the set-up plan) is prepared by the Swift parent in the plain struct below before
// clone(). The mounts are the plan's (CShimsSetup.h, run by setup.c); container.c holds the
// process steps around it: namespaces, cgroups, the user-namespace hand-over, pivot_root,
// console, limits, the payload.
#pragma once

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#include "CShimsSetup.h"

/// What runs in the end, for `run` and `shell` alike: the payload and its identity.
struct img_payload {
    /// argv[0] is a path inside the container or a name looked up in PATH of `envp`.
    const char *const *argv;
    /// NULL-terminated "NAME=value" strings.
    const char *const *envp;
    /// Working directory inside the container (resolved beneath its root).
    const char *working_directory;
    /// Non-zero: when the working directory cannot be entered, "/" is (`shell`'s home fallback).
    int working_directory_or_root;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t group_count;
    /// Capabilities kept in the bounding set (bit N = capability N).
    uint64_t capabilities;
    int no_new_privileges;
    /// Classic BPF seccomp programs (see img_child_install_seccomp) and their size; 0: none.
    const void *seccomp_program;
    size_t seccomp_program_size;
};

/// One --rlimit=: RLIMIT_* number, soft and hard value (RLIM_INFINITY = ~0).
struct img_resource_limit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

struct img_container_config {
    /// Host path of the container's tree (-D): what IMG_IN_TREE paths resolve beneath.
    const char *directory;
    /// The set-up plan (CShimsSetup.h): it makes the root and every mount of the container.
    const struct img_setup_op *ops;
    size_t op_count;
    /// Non-zero: a new network namespace with only the loopback interface up.
    int private_network;
    /// --network-namespace-path=: a network namespace the child joins (setns) before anything
    /// else, instead of the host's or a new one (private_network is 0 then). Values below 3: none.
    int netns_fd;
    /// Non-zero: a small init is PID 1 and the payload is PID 2.
    int as_pid2;
    /// The container's host name (UTS namespace).
    const char *hostname;
    struct img_payload payload;
    /// Host cgroup directories the child moves itself into before it unshares its cgroup
    /// namespace (NULL-terminated).
    const char *const *cgroup_directories;

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

    /* --- user namespace (--private-users=) --- */
    /// Non-zero: the payload runs in the user namespace `userns_fd` (see container.c "user
    /// namespace" for who does what on which side of it).
    int userns;
    int userns_fd;
    /// Write end of a pipe that gets the host PID (pid_t) of the container's PID 1.
    int userns_pid_pipe;

    /// Read end of a pipe the container's PID 1 waits on (for EOF) before it starts the payload,
    /// while imagectl sets up what belongs to the host side (its network links); -1: no wait.
    int proceed_fd;

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

/// Installs SIGTERM and SIGINT handlers (process-wide, whatever thread receives them): the first
/// signal sends `kill_signal` to the process behind `pidfd` and one byte to the socket `wake_fd`
/// (-1: none), where imagectl's watchdog waits to SIGKILL it when the stop timeout passes; any
/// later one sends SIGKILL at once. Returns -1 and sets errno on failure.
int img_container_forward_signals(int pidfd, int kill_signal, int wake_fd);

/// Stops forwarding (before `pidfd` is closed, so that a late signal cannot reach a reused fd).
void img_container_forward_stop(void);

/// Non-zero once a SIGTERM/SIGINT was forwarded.
int img_container_signal_forwarded(void);

/// pidfd_send_signal(2) (no glibc 2.36 wrapper). Returns -1 and sets errno on failure.
int img_pidfd_send_signal(int pidfd, int signal);

/// SIGRTMIN is a function call in glibc; exported as one for Swift.
int img_sigrtmin(void);

/// CAP_LAST_CAP of the running kernel from /proc/sys/kernel/cap_last_cap (or the header's value).
int img_cap_last_cap(void);
