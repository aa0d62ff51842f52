// CShimsEnter: `imagectl shell`, a new process inside a running container's namespaces.
//
// setns(2) into a mount or PID namespace is not allowed in (mount) or does not affect (PID) a
// multi-threaded process, so, as for the container itself (CShimsContainer.h), a C child made by
// clone(2) does the work with system calls only: it joins the container's cgroups, opens the
// container's root through /proc/PID/root, setns()es into the leader's mount, PID, UTS, IPC,
// network and cgroup namespaces through a pidfd (one atomic call), chroots, and clone()s the
// payload, which is the first of the two processes inside the PID namespace. The first child
// stays outside as the payload's parent, waits for it and exits with its status (128+N for a
// signal N), so the Swift side waits for an ordinary child.
#pragma once

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#include "CShimsContainer.h"

struct img_enter_config {
    /// pidfd of the container's leader (its PID 1, as the host sees it).
    int leader_pidfd;
    /// "/proc/PID/root" of the leader: opened before setns, the directory the payload chroots to.
    const char *root_path;
    /// Host cgroup.procs files the child writes itself into before it joins the cgroup namespace
    /// (NULL-terminated), so that it is accounted to the container and sees the container's
    /// cgroup as its root.
    const char *const *cgroup_procs;
    struct img_payload payload;
    /// -1: the payload uses the caller's standard input, output and error. Otherwise a connected
    /// AF_UNIX socket: the payload gets a new pty from the container's own devpts as its
    /// controlling terminal and standard streams, and the pty's master is sent over this socket
    /// (SCM_RIGHTS) for the caller to relay.
    int console_socket;
};

/// Starts the helper child. Returns its PID and stores in `*error_fd` the read end of a
/// close-on-exec pipe that reaches EOF once the payload was exec'd, or carries one
/// `struct img_container_error` (CShimsContainer.h) first. Returns -1 and sets errno on failure.
pid_t img_container_enter(const struct img_enter_config *config, int *error_fd);
