// Host-side namespace helpers, called from imagectl itself, not from a container child: the user
// namespace (--private-users=, --bind=...:idmap; making it and ID-mapped trees) and network
// namespaces (CShimsNamespaces.h).
#define _GNU_SOURCE
#include "CShimsContainer.h"
#include "CShims.h"
#include "CShimsNamespaces.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sched.h>
#include <spawn.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

/// Body of the helper that holds the new user namespace until its maps are written and its
/// namespace file is open: waits for EOF on the pipe.
int img_userns_create(uint32_t base, uint32_t size) {
    int sync[2];
    if (pipe2(sync, O_CLOEXEC) < 0) return -1;
    // A raw clone (fork-like, no new stack): the child only reads and exits.
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) {
        char byte;
        close(sync[1]);
        while (read(sync[0], &byte, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    int saved = errno;
    close(sync[0]);
    if (pid < 0) { close(sync[1]); errno = saved; return -1; }
    int result = -1;
    char path[64], map[64];
    snprintf(map, sizeof map, "0 %u %u\n", base, size);
    static const char *const files[] = {"uid_map", "gid_map"};
    int ok = 1;
    for (int i = 0; i < 2 && ok; i++) {
        snprintf(path, sizeof path, "/proc/%ld/%s", pid, files[i]);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        ok = fd >= 0 && write(fd, map, strlen(map)) == (ssize_t)strlen(map);
        if (!ok) saved = errno;
        if (fd >= 0) close(fd);
    }
    if (ok) {
        snprintf(path, sizeof path, "/proc/%ld/ns/user", pid);
        result = open(path, O_RDONLY | O_CLOEXEC);
        if (result < 0) saved = errno;
    }
    close(sync[1]);
    int status;
    while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {}
    errno = saved;
    return result;
}

int img_idmapped_tree(const char *path, int userns_fd, int recursive) {
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
    if (tree < 0) return -1;
    if (img_mount_setattr(tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)userns_fd) < 0) {
        int saved = errno;
        close(tree);
        errno = saved;
        return -1;
    }
    return tree;
}

int img_idmap_probe(const char *path, int userns_fd) {
    int tree = img_idmapped_tree(path, userns_fd, 1);
    if (tree < 0) return -1;
    close(tree);
    return 0;
}

const int img_clone_newnet = CLONE_NEWNET;

int img_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }

int img_unshare_net(void) { return unshare(CLONE_NEWNET); }

int img_spawn_file_actions_closefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}
