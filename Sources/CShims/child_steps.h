// Steps shared by the two clone()d children that end in a container payload: container.c (the
// container's PID 1) and enter.c (`imagectl shell`), and the set-up interpreter (setup.c).
// Private to CShims (not under include/). Same rules as those children: system calls only, no
// malloc, no stdio.
#pragma once

#include "CShimsContainer.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IMG_HIDDEN __attribute__((visibility("hidden")))

/// Reports a failed step ("STEP DETAIL" and errno) on the child's error pipe and ends the child
/// with 127. The pipe is the one img_child_clone made for this child.
IMG_HIDDEN __attribute__((noreturn)) void img_child_die(const char *step, const char *detail);

/// Closes the error pipe (a process that lives on without reporting, such as a stub init).
IMG_HIDDEN void img_child_close_error_pipe(void);

/// SIG_DFL for every signal and an empty signal mask (a clone keeps the parent's handlers).
IMG_HIDDEN void img_child_reset_signals(void);

/// "/proc/self/fd/N": the path through which a mount lands exactly on the opened inode.
IMG_HIDDEN void img_fd_path(char out[64], int fd);

/// Appends `s` to `buf` (capacity `cap`), keeping it NUL-terminated; returns 0 or -1 if cut.
IMG_HIDDEN int img_append(char *buf, size_t cap, const char *s);

/// Decimal `value` into `out` (24 bytes are enough).
IMG_HIDDEN void img_format_int(char *out, long value);

/// A new pty from the devpts whose ptmx is `ptmx` becomes the controlling terminal (after
/// setsid) and the standard streams, bound onto /dev/console too when `bind_console`; its master
/// is sent over `socket` (SCM_RIGHTS) and both are closed. Dies on failure.
IMG_HIDDEN void img_child_take_console(int socket, const char *ptmx, int bind_console);

/// The payload's last steps, shared by `run` and `shell`: working directory beneath the root,
/// bounding set, supplementary groups, no_new_privs, seccomp, IDs, everything from fd 3 up
/// close-on-exec, exec. Never returns (dies naming the failed step).
IMG_HIDDEN __attribute__((noreturn)) void img_child_exec_payload(const struct img_payload *payload);

/// Drops every capability not in `keep` (bit N = capability N) from the bounding set
/// (PR_CAPBSET_DROP up to the running kernel's last capability) and clears the ambient set.
IMG_HIDDEN int img_child_drop_bounding_set(uint64_t keep);

/// Installs classic BPF seccomp programs, in order: `size` bytes holding, for each program, its
/// instruction count (uint32_t, host order) then its struct sock_filter array (0 bytes: nothing).
IMG_HIDDEN int img_child_install_seccomp(const void *program, size_t size);

/// clone(2) of `child` on a fresh 1 MiB stack with `flags` (namespaces | SIGCHLD), and a
/// close-on-exec error pipe for img_child_die, whose read end is returned in `*error_fd`.
/// Returns the child's PID, or -1 with errno set and nothing left open.
IMG_HIDDEN pid_t img_child_clone(int (*child)(void *), int flags, void *arg, int *error_fd);

/// Runs the operations of `phase` in `ops`, in order (setup.c). `tree` is the image's directory
/// (IMG_IN_TREE), `userns_fd` the user namespace ID-mapped mounts use (-1: none). The root that
/// IMG_IN_ROOT paths resolve beneath is `*rootfd` (an O_PATH fd, -1 until an IMG_OP_ROOT), which
/// IMG_OP_ROOT replaces. Dies naming the failed operation and path.
IMG_HIDDEN void img_setup_run(const struct img_setup_op *ops, size_t count, enum img_setup_phase phase,
                              const char *tree, int userns_fd, int *rootfd);
