// `imagectl shell`: a new process in a running container's namespaces. See CShimsEnter.h for the
// process model. Like container.c's child, both children here only make system calls (they are
// copies of a multi-threaded process): no malloc, no stdio, no locks. The payload's last steps
// are the same as a container's (child_steps.c).
#define _GNU_SOURCE
#include "CShimsEnter.h"
#include "CShimsContainer.h"
#include "child_steps.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>  // stat of the namespace files
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>


/// Whether the leader behind `root_path` ("/proc/PID/root") is in another user namespace than
/// this process: compares /proc/PID/ns/user with /proc/self/ns/user.
static int enter_user_namespace_differs(const char *root_path) {
    char path[96] = "";
    size_t n = strlen(root_path);
    if (n < 4 || n + 8 >= sizeof path || strcmp(root_path + n - 4, "root") != 0) return 0;
    memcpy(path, root_path, n - 4);
    memcpy(path + n - 4, "ns/user", 8);
    struct stat leader, self;
    if (stat(path, &leader) < 0 || stat("/proc/self/ns/user", &self) < 0) return 0;
    return leader.st_ino != self.st_ino || leader.st_dev != self.st_dev;
}

static int enter_main(void *arg) {
    const struct img_enter_config *c = arg;
    img_child_reset_signals();
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    // Non-dumpable before entering the container's namespaces (runc CVE-2019-5736): the payload,
    // cloned into its PID namespace below, runs imagectl's executable until it execs, and a
    // process of the container that opened /proc/N/exe then could write the host's file once
    // this imagectl is gone. See container.c's child_main.
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) img_child_die("PR_SET_DUMPABLE", NULL);
    for (const char *const *procs = c->cgroup_procs; procs && *procs; procs++) {
        int fd = open(*procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0) img_child_die("open", *procs);
        if (write(fd, "0", 1) != 1) img_child_die("join cgroup", *procs);
        close(fd);
    }
    int root = open(c->root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) img_child_die("open", c->root_path);
    int namespaces = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP;
    // User namespace: a container with --private-users= has its own user
    // namespace, joined in the same setns (its other namespaces belong to it); setns refuses the
    // caller's own user namespace, so only when it differs. The payload's setresuid below then
    // picks IDs of the container's namespace.
    if (enter_user_namespace_differs(c->root_path)) namespaces |= CLONE_NEWUSER;
    if (setns(c->leader_pidfd, namespaces) < 0)
        img_child_die("setns", "container namespaces");
    // The mount namespace's root is the mount the container pivoted to; chroot to the leader's
    // root as nsenter does, so a container that chrooted further is followed too.
    if (fchdir(root) < 0 || chroot(".") < 0) img_child_die("chroot", "container root");
    close(root);

    // Signals are held (since the start) until the payload exists, then forwarded (except the
    // terminal's SIGINT and SIGQUIT, which reach the payload directly when it shares the terminal).
    long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) img_child_die("clone", "payload");
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (c->console_socket >= 0) img_child_take_console(c->console_socket, "/dev/ptmx", 0);
        img_child_exec_payload(&c->payload);
    }
    img_child_close_error_pipe();
    if (c->console_socket >= 0) close(c->console_socket);
    (void)syscall(SYS_close_range, 3U, ~0U, 0U);
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&all, &info);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            if (sig != SIGINT && sig != SIGQUIT) (void)kill((pid_t)pid, sig);
            continue;
        }
        int status;
        pid_t done;
        while ((done = waitpid(-1, &status, WNOHANG)) > 0) {
            if (done == (pid_t)pid) {
                if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
                _exit(128 + WTERMSIG(status));
            }
        }
    }
}

pid_t img_container_enter(const struct img_enter_config *config, int *error_fd) {
    return img_child_clone(enter_main, SIGCHLD, (void *)config, error_fd);
}
