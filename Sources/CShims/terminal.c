// See CShimsTerminal.h.
#define _GNU_SOURCE
#include "CShimsTerminal.h"
#include "socket_message.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <stdlib.h>
#include <unistd.h>

int img_open_pty(int *master, int *slave) {
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    char name[128];
    if (grantpt(m) != 0 || unlockpt(m) != 0 || ptsname_r(m, name, sizeof name) != 0) {
        int saved = errno;
        close(m);
        errno = saved;
        return -1;
    }
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) {
        int saved = errno;
        close(m);
        errno = saved;
        return -1;
    }
    *master = m;
    *slave = s;
    return 0;
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
