#ifndef BULKHEAD_POSIX_H
#define BULKHEAD_POSIX_H

#include <sys/types.h>

/// Sends one file descriptor over a connected Unix socket (SCM_RIGHTS) with one
/// byte of payload. Exists because the CMSG_* helpers are macros Swift cannot call.
/// Returns 0, or -1 with errno set.
int bh_send_fd(int socket, int fd_to_send);

/// Receives one file descriptor sent by `bh_send_fd`. Returns the new descriptor
/// (close-on-exec), or -1 with errno set (EBADMSG when the message held none).
int bh_recv_fd(int socket);

/// Reads the resident set size of this process in bytes from /proc/self/statm,
/// or returns 0 when it cannot.
long long bh_resident_bytes(void);

/// Closes every descriptor from `lowest` up. A worker calls it first thing so it
/// keeps only the descriptors the supervisor meant to give it, whatever another
/// thread of the supervisor had open while it spawned.
void bh_close_from(int lowest);

/// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER),
/// so workers stay the supervisor's to wait for. Returns 0 or -1.
int bh_set_child_subreaper(void);

/// Duplicates descriptor `target_fd` of process `pid` into this process
/// (pidfd_open + pidfd_getfd, Linux 5.6+; needs ptrace rights, which the same user
/// has). A new supervisor uses it to take back the ingress's listening socket.
/// Returns the new descriptor (close-on-exec) or -1 with errno set.
int bh_take_fd(int pid, int target_fd);

#endif
