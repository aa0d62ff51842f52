// Steps shared by the two clone()d children that end in a container payload: container.c (the
// container's PID 1) and enter.c (`imagectl shell`). Private to CShims (not under include/).
// Same rules as those children: system calls only, no malloc, no stdio; each returns -1 with errno
// set and leaves the reporting to its caller's own error pipe.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// Drops every capability not in `keep` (bit N = capability N) from the bounding set
/// (PR_CAPBSET_DROP up to the running kernel's last capability) and clears the ambient set.
__attribute__((visibility("hidden"))) int img_child_drop_bounding_set(uint64_t keep);

/// Installs classic BPF seccomp programs, in order: `size` bytes holding, for each program, its
/// instruction count (uint32_t, host order) then its struct sock_filter array (0 bytes: nothing).
__attribute__((visibility("hidden"))) int img_child_install_seccomp(const void *program, size_t size);

/// execve of argv[0], looked up in the PATH of `envp` when it has no "/" (execvpe would read the
/// parent's environment and may allocate). Returns only on failure, with errno of the most
/// telling attempt.
__attribute__((visibility("hidden"))) void img_child_exec(const char *const *argv, const char *const *envp);

/// chdir to `path` resolved beneath the process's root (openat2 RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS, then fchdir): a --chdir=/proc/self/fd/N or a symlink cannot make a
/// descriptor inherited from imagectl, or a host directory, the payload's working directory
/// (runc CVE-2024-21626).
__attribute__((visibility("hidden"))) int img_child_chdir_beneath_root(const char *path);

/// clone(2) of `child` on a fresh 1 MiB stack with `flags` (namespaces | SIGCHLD), and a
/// close-on-exec error pipe: its write end is stored in `*error_pipe_slot` for the child's own
/// die() (the slot is reset in the parent), its read end returned in `*error_fd`. Returns the
/// child's PID, or -1 with errno set and nothing left open.
__attribute__((visibility("hidden"))) pid_t img_child_clone(int (*child)(void *), int flags, void *arg,
                                                            int *error_pipe_slot, int *error_fd);
