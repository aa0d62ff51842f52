// CShimsNamespaces: setns(2) and unshare(2) for network namespaces, which Swift's Glibc module
// does not declare (they need _GNU_SOURCE), and CLONE_NEWNET, a macro Swift does not import.
// Used by the Netlink module only from a thread of its own (see Netlink/Bindings): CLONE_NEWNET
// moves only the calling thread, so a Swift process may use it where CLONE_NEWNS could not be.
#pragma once

/// CLONE_NEWNET from <sched.h>.
extern const int img_clone_newnet;

/// setns(fd, CLONE_NEWNET): the calling thread joins the network namespace `fd`. -1 and errno
/// on failure.
int img_setns_net(int fd);

/// unshare(CLONE_NEWNET): the calling thread gets a new, empty network namespace. -1 and errno
/// on failure.
int img_unshare_net(void);

#include <spawn.h>

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34, declared only with _GNU_SOURCE): the
/// helpers the Network module spawns (dnsmasq, nft) get no descriptor of imagectl from 3 up.
int img_spawn_file_actions_closefrom(posix_spawn_file_actions_t *actions, int from);
