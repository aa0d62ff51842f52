// `imagectl shell`: a new process in a running container's namespaces. See CShimsEnter.h for the
// process model. Like container.c's child, both children here only make system calls (they are
// copies of a multi-threaded process): no malloc, no stdio, no locks.
#define _GNU_SOURCE
#include "CShimsEnter.h"
#include "CShimsContainer.h"
#include "child_steps.h"
#include "socket_message.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>  // stat of the namespace files
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <pthread.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

static int enter_error_pipe = -1;

static void enter_die(const char *step, const char *detail) {
    struct img_container_error report;
    memset(&report, 0, sizeof report);
    report.error_number = errno;
    size_t n = 0;
    for (const char *s = step; *s && n + 1 < sizeof report.step; s++) report.step[n++] = *s;
    if (detail && n + 2 < sizeof report.step) {
        report.step[n++] = ' ';
        for (const char *s = detail; *s && n + 1 < sizeof report.step; s++) report.step[n++] = *s;
    }
    if (enter_error_pipe >= 0) {
        ssize_t ignored = write(enter_error_pipe, &report, sizeof report);
        (void)ignored;
    }
    _exit(127);
}

int img_send_fd(int socket, int fd) {
    struct img_fd_message m;
    img_fd_message_init(&m);
    struct cmsghdr *header = CMSG_FIRSTHDR(&m.message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &fd, sizeof(int));
    ssize_t r;
    do { r = sendmsg(socket, &m.message, MSG_NOSIGNAL); } while (r < 0 && errno == EINTR);
    return r == 1 ? 0 : -1;
}

int img_receive_fd(int socket) {
    struct img_fd_message m;
    img_fd_message_init(&m);
    ssize_t r;
    do { r = recvmsg(socket, &m.message, MSG_CMSG_CLOEXEC); } while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    struct cmsghdr *header = CMSG_FIRSTHDR(&m.message);
    if (r != 1 || !header || header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS ||
        header->cmsg_len != CMSG_LEN(sizeof(int))) {
        errno = EBADMSG;
        return -1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(header), sizeof(int));
    return fd;
}

/// A new pty from the container's devpts (reached through /dev/ptmx after the chroot) becomes the
/// controlling terminal and the standard streams; its master goes to the caller.
static void take_console(int socket) {
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) enter_die("open", "/dev/ptmx");
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0) enter_die("unlockpt", NULL);
    int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (slave < 0) enter_die("open", "pty peer");
    if (setsid() < 0) enter_die("setsid", NULL);
    if (ioctl(slave, TIOCSCTTY, 0) < 0) enter_die("TIOCSCTTY", NULL);
    if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0) enter_die("dup2", "pty");
    if (slave > 2) close(slave);
    if (img_send_fd(socket, master) < 0) enter_die("send", "pty master");
    close(master);
    close(socket);
}

static void payload_main(const struct img_enter_config *c) {
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (c->console_socket >= 0) take_console(c->console_socket);
    if (img_child_chdir_beneath_root(c->working_directory) < 0 && chdir("/") < 0) enter_die("chdir", c->working_directory);
    if (img_child_drop_bounding_set(c->capabilities) < 0) enter_die("PR_CAPBSET_DROP", NULL);
    // Raw system calls: glibc's wrappers signal every thread of the copied thread list (setxid
    // broadcast) and can wait forever in a clone() of a multi-threaded process.
    if (syscall(SYS_setgroups, c->group_count, c->groups) < 0) enter_die("setgroups", NULL);
    if (img_child_install_seccomp(c->seccomp_program, c->seccomp_program_size) < 0) enter_die("seccomp", NULL);
    if (syscall(SYS_setresgid, c->gid, c->gid, c->gid) < 0) enter_die("setresgid", NULL);
    if (syscall(SYS_setresuid, c->uid, c->uid, c->uid) < 0) enter_die("setresuid", NULL);
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) enter_die("close_range", NULL);
    img_child_exec(c->argv, c->envp);
    enter_die("execute", c->argv[0]);
}

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
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)sigaction(sig, &action, NULL);
    }
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    // Non-dumpable before entering the container's namespaces (runc CVE-2019-5736): the payload,
    // cloned into its PID namespace below, runs imagectl's executable until it execs, and a
    // process of the container that opened /proc/N/exe then could write the host's file once
    // this imagectl is gone. See container.c's child_main.
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) enter_die("PR_SET_DUMPABLE", NULL);
    for (const char *const *procs = c->cgroup_procs; procs && *procs; procs++) {
        int fd = open(*procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0) enter_die("open", *procs);
        if (write(fd, "0", 1) != 1) enter_die("join cgroup", *procs);
        close(fd);
    }
    int root = open(c->root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) enter_die("open", c->root_path);
    int namespaces = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP;
    // User namespace: a container with --private-users= has its own user
    // namespace, joined in the same setns (its other namespaces belong to it); setns refuses the
    // caller's own user namespace, so only when it differs. The payload's setresuid below then
    // picks IDs of the container's namespace.
    if (enter_user_namespace_differs(c->root_path)) namespaces |= CLONE_NEWUSER;
    if (setns(c->leader_pidfd, namespaces) < 0)
        enter_die("setns", "container namespaces");
    // The mount namespace's root is the mount the container pivoted to; chroot to the leader's
    // root as nsenter does, so a container that chrooted further is followed too.
    if (fchdir(root) < 0 || chroot(".") < 0) enter_die("chroot", "container root");
    close(root);

    // Signals are held until the payload exists, then forwarded (except the terminal's SIGINT
    // and SIGQUIT, which reach the payload directly when it shares the terminal).
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) enter_die("clone", "payload");
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        payload_main(c);
        _exit(127);
    }
    close(enter_error_pipe);
    enter_error_pipe = -1;
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
    return img_child_clone(enter_main, SIGCHLD, (void *)config, &enter_error_pipe, error_fd);
}

int img_terminal_size(int fd, unsigned short *rows, unsigned short *columns) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) < 0) return -1;
    *rows = size.ws_row;
    *columns = size.ws_col;
    return 0;
}

int img_set_terminal_size(int fd, unsigned short rows, unsigned short columns) {
    struct winsize size;
    memset(&size, 0, sizeof size);
    size.ws_row = rows;
    size.ws_col = columns;
    return ioctl(fd, TIOCSWINSZ, &size);
}

static int winch_fds[2] = {-1, -1};

static void winch_handler(int sig) {
    (void)sig;
    int saved = errno;
    char byte = 1;
    ssize_t ignored = write(winch_fds[1], &byte, 1);  // non-blocking: a full pipe drops it
    (void)ignored;
    errno = saved;
}

int img_winch_pipe(void) {
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&lock);
    if (winch_fds[0] < 0) {
        if (pipe2(winch_fds, O_CLOEXEC | O_NONBLOCK) < 0) {
            pthread_mutex_unlock(&lock);
            return -1;
        }
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = winch_handler;
        action.sa_flags = SA_RESTART;
        sigemptyset(&action.sa_mask);
        if (sigaction(SIGWINCH, &action, NULL) < 0) {
            pthread_mutex_unlock(&lock);
            return -1;
        }
    }
    pthread_mutex_unlock(&lock);
    // A caller may have been started with SIGWINCH blocked (the mask survives exec): unblock it in
    // this thread, which runs the relay.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGWINCH);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    return winch_fds[0];
}
