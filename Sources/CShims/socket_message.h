// The msghdr set-up shared by the sendmsg/recvmsg calls of CShims: one data buffer and one
// control buffer (for SCM_RIGHTS and SCM_CREDENTIALS). notify.c and enter.c both pass descriptors
// over AF_UNIX sockets; enter.c does it in a child of clone(), so this only fills memory: no
// malloc, no locks.
#pragma once

#include <string.h>
#include <sys/socket.h>

/// Clears `message` and `control` (`control_size` bytes) and points the message at `iov` (one
/// data buffer) and the control buffer.
static inline void img_message_init(struct msghdr *message, struct iovec *iov, void *control,
                                    size_t control_size) {
    memset(control, 0, control_size);
    memset(message, 0, sizeof *message);
    message->msg_iov = iov;
    message->msg_iovlen = 1;
    message->msg_control = control;
    message->msg_controllen = control_size;
}

/// A message of one data byte with room for one descriptor (SCM_RIGHTS): what img_send_fd sends
/// and img_receive_fd receives.
struct img_fd_message {
    char byte;
    struct iovec iov;
    struct msghdr message;
    // Last: clang treats CMSG_SPACE() as a variable size.
    union {
        char buffer[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
};

/// Sets up `m` (data byte 0) for sendmsg or recvmsg.
static inline void img_fd_message_init(struct img_fd_message *m) {
    m->byte = 0;
    m->iov.iov_base = &m->byte;
    m->iov.iov_len = 1;
    img_message_init(&m->message, &m->iov, m->control.buffer, sizeof m->control.buffer);
}
