// See CShimsSpawn.h. The child runs on a copy of imagectl's address space after clone(): system
// calls only, no malloc, no stdio (the same rules as child_steps.c).
#define _GNU_SOURCE
#include "child_steps.h"
#include "CShimsSpawn.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

extern char **environ;

struct spawn_args {
    const char *path;
    char *const *argv;
    const int *mount_fds;
    const char *const *targets;
    size_t count;
    const struct img_spawn_overlay *overlay;
    int output_fd;
};

static int spawn_child(void *raw) {
    const struct spawn_args *a = raw;
    img_child_reset_signals();
    // Slave, not private: mounts the host makes later under a shared tree still reach the
    // helper; nothing attached here goes the other way.
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) img_child_die("mount", "/ (make slave)");
    for (size_t i = 0; i < a->count; i++) {
        if (syscall(SYS_move_mount, a->mount_fds[i], "", AT_FDCWD, a->targets[i], MOVE_MOUNT_F_EMPTY_PATH) < 0)
            img_child_die("move_mount", a->targets[i]);
    }
    const struct img_spawn_overlay *o = a->overlay;
    if (o) {
        if (mount("tmpfs", o->layers, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") < 0) img_child_die("mount tmpfs", o->layers);
        if (mkdir(o->upper, (mode_t)o->mode) < 0) img_child_die("mkdir", o->upper);
        if (chown(o->upper, o->uid, o->gid) < 0) img_child_die("chown", o->upper);
        if (chmod(o->upper, (mode_t)o->mode) < 0) img_child_die("chmod", o->upper);
        if (mkdir(o->work, 0700) < 0) img_child_die("mkdir", o->work);
        if (mkdir(o->merged, 0755) < 0) img_child_die("mkdir", o->merged);
        if (mount("overlay", o->merged, "overlay", o->read_only ? MS_RDONLY : 0, o->options) < 0)
            img_child_die("mount overlay", o->merged);
    }
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0) img_child_die("open", "/dev/null");
    if (dup2(null, 0) < 0 || dup2(a->output_fd, 1) < 0 || dup2(a->output_fd, 2) < 0) img_child_die("dup2", NULL);
    // Everything from 3 up is closed at exec; the error pipe too, which is how the parent
    // learns that the exec happened.
    if (syscall(SYS_close_range, 3, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) < 0) img_child_die("close_range", NULL);
    execve(a->path, a->argv, environ);
    img_child_die("execve", a->path);
}

pid_t img_spawn_with_mounts(const char *path, char *const argv[], const int *mount_fds, const char *const *targets,
                            size_t count, const struct img_spawn_overlay *overlay, int output_fd, int *error_fd) {
    struct spawn_args args = {path, argv, mount_fds, targets, count, overlay, output_fd};
    return img_child_clone(spawn_child, CLONE_NEWNS | SIGCHLD, &args, error_fd);
}

static pid_t guarded[16];
static volatile sig_atomic_t guarded_count;
static struct sigaction guard_previous[3];
static const int guard_signals[3] = {SIGTERM, SIGINT, SIGHUP};

static void guard_handler(int signo) {
    int saved = errno;
    for (sig_atomic_t i = 0; i < guarded_count; i++) kill(guarded[i], SIGTERM);
    signal(signo, SIG_DFL);
    raise(signo);
    errno = saved;
}

int img_spawn_guard(const pid_t *pids, size_t count) {
    if (count > 16) { errno = E2BIG; return -1; }
    guarded_count = 0;
    for (size_t i = 0; i < count; i++) guarded[i] = pids[i];
    guarded_count = (sig_atomic_t)count;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = guard_handler;
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < 3; i++) {
        if (sigaction(guard_signals[i], &action, &guard_previous[i]) < 0) return -1;
    }
    return 0;
}

void img_spawn_guard_clear(void) {
    if (guarded_count == 0) return;
    for (int i = 0; i < 3; i++) (void)sigaction(guard_signals[i], &guard_previous[i], NULL);
    guarded_count = 0;
}

int img_open_tree_readonly(const char *path) {
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0) return -1;
    struct { uint64_t set, clr, propagation, userns_fd; } attr = {MOUNT_ATTR_RDONLY, 0, 0, 0};
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
        int saved = errno;
        close(tree);
        errno = saved;
        return -1;
    }
    return tree;
}
