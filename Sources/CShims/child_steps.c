// See child_steps.h.
#define _GNU_SOURCE
#include "child_steps.h"
#include "CShimsTerminal.h"  // img_send_fd

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

/// The write end of the error pipe of the child this process is (set in the child's copy of the
/// address space by img_child_clone; -1 in imagectl itself).
static int error_pipe = -1;

int img_append(char *buf, size_t cap, const char *s) {
    size_t n = strlen(buf);
    size_t m = strlen(s);
    if (n + m + 1 > cap) return -1;
    memcpy(buf + n, s, m + 1);
    return 0;
}

void img_format_int(char *out, long value) {
    char tmp[24];
    int i = 0;
    int negative = value < 0;
    unsigned long v = negative ? (unsigned long)(-value) : (unsigned long)value;
    do { tmp[i++] = (char)('0' + v % 10); v /= 10; } while (v && i < 22);
    int j = 0;
    if (negative) out[j++] = '-';
    while (i) out[j++] = tmp[--i];
    out[j] = 0;
}

void img_fd_path(char out[64], int fd) {
    char num[24];
    out[0] = 0;
    img_append(out, 64, "/proc/self/fd/");
    img_format_int(num, fd);
    img_append(out, 64, num);
}

void img_child_die(const char *step, const char *detail) {
    struct img_container_error report;
    memset(&report, 0, sizeof report);
    report.error_number = errno;
    img_append(report.step, sizeof report.step, step);
    if (detail) {
        img_append(report.step, sizeof report.step, " ");
        img_append(report.step, sizeof report.step, detail);
    }
    if (error_pipe >= 0) {
        ssize_t ignored = write(error_pipe, &report, sizeof report);
        (void)ignored;
    }
    _exit(127);
}

void img_child_close_error_pipe(void) {
    if (error_pipe >= 0) close(error_pipe);
    error_pipe = -1;
}

void img_child_reset_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)sigaction(sig, &action, NULL);  // fails for the few glibc-internal signals; fine
    }
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
}

void img_child_take_console(int socket, const char *ptmx, int bind_console) {
    int master = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) img_child_die("open", ptmx);
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0) img_child_die("unlockpt", NULL);
    int peer = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (peer < 0) img_child_die("open", "pty peer");
    if (bind_console) {
        // /dev/console is the pty, as nspawn makes it: a bind of the peer onto a file made there.
        int console = open("/dev/console", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (console < 0) img_child_die("create", "/dev/console");
        close(console);
        char p[64];
        img_fd_path(p, peer);
        if (mount(p, "/dev/console", NULL, MS_BIND, NULL) < 0) img_child_die("mount", "/dev/console");
    }
    if (getsid(0) != getpid() && setsid() < 0) img_child_die("setsid", NULL);
    if (ioctl(peer, TIOCSCTTY, 0) < 0) img_child_die("TIOCSCTTY", NULL);
    if (dup2(peer, 0) < 0 || dup2(peer, 1) < 0 || dup2(peer, 2) < 0) img_child_die("dup2", "console");
    if (peer > 2) close(peer);
    if (img_send_fd(socket, master) < 0) img_child_die("send", "console pty");
    close(master);
    close(socket);
}

/// execve of argv[0], looked up in the PATH of `envp` when it has no "/" (execvpe would read the
/// parent's environment and may allocate). Returns only on failure, with errno of the most
/// telling attempt.
static void exec_in_path(const char *const *argv, const char *const *envp);

/// chdir to `path` resolved beneath the process's root (openat2 RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS, then fchdir): a --chdir=/proc/self/fd/N or a symlink cannot make a
/// descriptor inherited from imagectl, or a host directory, the payload's working directory
/// (runc CVE-2024-21626).
static int chdir_beneath_root(const char *path);

void img_child_exec_payload(const struct img_payload *p) {
    if (chdir_beneath_root(p->working_directory) < 0 && (!p->working_directory_or_root || chdir("/") < 0))
        img_child_die("chdir", p->working_directory);
    if (img_child_drop_bounding_set(p->capabilities) < 0) img_child_die("PR_CAPBSET_DROP", NULL);
    // Raw system calls, not glibc's wrappers: those broadcast the change to every thread in
    // glibc's thread list (__nptl_setxid), which this clone() child copied from the
    // multi-threaded parent, and wait forever for a thread that was being created at clone time.
    if (syscall(SYS_setgroups, p->group_count, p->groups) < 0) img_child_die("setgroups", NULL);
    if (p->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) img_child_die("PR_SET_NO_NEW_PRIVS", NULL);
    // seccomp while still root (CAP_SYS_ADMIN allows it without no_new_privs).
    if (img_child_install_seccomp(p->seccomp_program, p->seccomp_program_size) < 0) img_child_die("seccomp", NULL);
    if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0) img_child_die("setresgid", NULL);
    if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0) img_child_die("setresuid", NULL);
    // Everything from 3 up closes at exec (runc CVE-2024-21626); the error pipe is close-on-exec
    // already and stays usable until then.
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) img_child_die("close_range", NULL);
    exec_in_path(p->argv, p->envp);
    img_child_die("execute", p->argv[0]);
}

int img_child_drop_bounding_set(uint64_t keep) {
    int last = img_cap_last_cap();
    for (int cap = 0; cap <= last; cap++) {
        if (cap < 64 && (keep & (1ULL << cap))) continue;
        // EINVAL: a capability this kernel does not know.
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) return -1;
    }
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    return 0;
}

int img_child_install_seccomp(const void *program, size_t size) {
    // Several programs in a row, each a 32-bit instruction count and its instructions: the
    // kernel runs every installed filter and takes the strictest answer, which lets a filter
    // with argument checks (ioctl requests) sit beside an allow list that admits ioctl as such.
    const unsigned char *next = program;
    while (size > 0) {
        uint32_t count;
        if (size < sizeof count) { errno = EINVAL; return -1; }
        memcpy(&count, next, sizeof count);
        next += sizeof count;
        size -= sizeof count;
        if (count == 0 || count > BPF_MAXINSNS || (size_t)count * sizeof(struct sock_filter) > size) {
            errno = EINVAL;
            return -1;
        }
        struct sock_fprog filter;
        filter.len = (unsigned short)count;
        filter.filter = (struct sock_filter *)(void *)next;
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0) < 0) return -1;
        next += (size_t)count * sizeof(struct sock_filter);
        size -= (size_t)count * sizeof(struct sock_filter);
    }
    return 0;
}

static int chdir_beneath_root(const char *path) {
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return -1;
    while (*path == '/') path++;
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    long fd;
    int tries = 0;  // EAGAIN: a ".." raced with a mount or rename somewhere; retry (openat2(2))
    do { fd = syscall(SYS_openat2, root, *path ? path : ".", &how, sizeof how); } while (fd < 0 && (errno == EINTR || (errno == EAGAIN && ++tries < 1000)));
    int saved = errno;
    close(root);
    if (fd < 0) { errno = saved; return -1; }
    int r = fchdir((int)fd);
    saved = errno;
    close((int)fd);
    errno = saved;
    return r;
}

static const char *env_value(const char *const *envp, const char *name) {
    size_t n = strlen(name);
    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=') return *envp + n + 1;
    return NULL;
}

static void exec_in_path(const char *const *argv, const char *const *envp) {
    const char *file = argv[0];
    if (strchr(file, '/')) {
        execve(file, (char *const *)argv, (char *const *)envp);
        return;
    }
    const char *path = env_value(envp, "PATH");
    if (!path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    int saved = ENOENT;
    size_t file_length = strlen(file);
    for (const char *p = path;;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char candidate[512];
        if (n > 0 && n + file_length + 2 < sizeof candidate) {
            memcpy(candidate, p, n);
            candidate[n] = '/';
            memcpy(candidate + n + 1, file, file_length + 1);
            execve(candidate, (char *const *)argv, (char *const *)envp);
            // Keep the first error that says more than "not here" (EACCES, ENOEXEC ...).
            if (errno != ENOENT && errno != ENOTDIR && saved == ENOENT) saved = errno;
        }
        if (!end) break;
        p = end + 1;
    }
    errno = saved;
}

pid_t img_child_clone(int (*child)(void *), int flags, void *arg, int *error_fd) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) < 0) return -1;
    size_t stack_size = 1 << 20;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        int saved = errno;
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        errno = saved;
        return -1;
    }
    // The child gets a copy of the address space, the slot included, before the parent resets it.
    error_pipe = pipe_fds[1];
    pid_t pid = clone(child, (char *)stack + stack_size, flags, arg);
    int saved = errno;
    error_pipe = -1;
    close(pipe_fds[1]);
    // Without CLONE_VM the child runs on its own copy of the stack.
    munmap(stack, stack_size);
    if (pid < 0) {
        close(pipe_fds[0]);
        errno = saved;
        return -1;
    }
    *error_fd = pipe_fds[0];
    return pid;
}
