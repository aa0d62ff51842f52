// CShimsSpawn: a helper daemon (virtiofsd) started in a mount namespace of its own, where what it
// serves is mounted before it execs: detached mounts made by imagectl (a read-only clone of a
// tree) are attached, an ephemeral overlay is made. Those mounts exist in no other namespace: they go away with the
// helper on every exit path, kill -9 of imagectl included, as the container runner's -x layer
// goes away with the container's namespace.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// A throw-away overlay made in the helper's namespace: a tmpfs on `layers` holding `upper`
/// (owner `uid`:`gid`, mode `mode`: the tree root's), `work` and `merged`, and an overlay on
/// `merged` with the mount(2) options `options` (lowerdir=...,upperdir=...,workdir=...),
/// read-only when `read_only`. Made with mount(2) in the child rather than as detached mounts
/// by imagectl: overlayfs takes detached layers only from Linux 6.15 on.
struct img_spawn_overlay {
    const char *layers;
    const char *upper;
    const char *work;
    const char *merged;
    const char *options;
    uint32_t uid;
    uint32_t gid;
    uint32_t mode;
    int read_only;
};

/// clone(CLONE_NEWNS) of a child that makes its mount tree a slave of the host's (nothing it
/// mounts propagates back), attaches each detached mount `mount_fds[i]` (from fsmount or
/// open_tree(OPEN_TREE_CLONE)) onto the directory `targets[i]` with move_mount, makes
/// `overlay` (NULL: none), connects
/// standard input to /dev/null and standard output and error to `output_fd`, closes every other
/// descriptor and execs `path` with `argv` (NULL-terminated) and the caller's environment.
/// Returns the child's PID and the read end of its error pipe in `*error_fd`: EOF once the exec
/// happened, or a `struct img_container_error` naming the failed step first (ChildStart's
/// protocol). -1 and errno when the clone failed.
pid_t img_spawn_with_mounts(const char *path, char *const argv[], const int *mount_fds, const char *const *targets,
                            size_t count, const struct img_spawn_overlay *overlay, int output_fd, int *error_fd);

/// Until img_spawn_guard_clear: SIGTERM, SIGINT and SIGHUP to imagectl first send SIGTERM to
/// each of `pids` (at most 16), then take their default action again (re-raised). For the
/// moments between a helper's start and qemu's, when no supervisor handles those signals yet
/// and a killed imagectl would leave the helper waiting for a connection forever.
int img_spawn_guard(const pid_t *pids, size_t count);

/// Puts back the handlers img_spawn_guard replaced.
void img_spawn_guard_clear(void);

/// A detached, recursive clone of the tree at `path` (open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)),
/// made read-only throughout (mount_setattr MOUNT_ATTR_RDONLY, recursive): the source of a
/// read-only share. Close-on-exec; -1 and errno on failure.
int img_open_tree_readonly(const char *path);
