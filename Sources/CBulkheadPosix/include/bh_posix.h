#ifndef BULKHEAD_POSIX_H
#define BULKHEAD_POSIX_H

#include <stddef.h>
#include <sys/types.h>

/// Sends one file descriptor over a connected Unix socket (SCM_RIGHTS) with one
/// byte of payload. Exists because the CMSG_* helpers are macros Swift cannot call.
/// Returns 0, or -1 with errno set.
int bh_send_fd(int socket, int fd_to_send);

/// Receives one file descriptor sent by `bh_send_fd`. Returns the new descriptor
/// (close-on-exec), or -1 with errno set (EBADMSG when the message held none).
int bh_recv_fd(int socket);

/// The effective uid of the process at the other end of a connected Unix socket
/// (SO_PEERCRED), in `*uid`. Returns 0, or -1 with errno set. A shim because
/// `struct ucred` needs _GNU_SOURCE, which Swift's Glibc module does not define.
int bh_peer_uid(int socket, uid_t *uid);

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

// MARK: - Crash notes
//
// A script that crashes its worker (a bug in the Lua library it reached, say) must
// be quarantined like one that overruns its deadline, or it takes a worker down on
// every request until the pool is degraded. The worker cannot send a control frame
// from a crashing thread, so it leaves a note: around every script call it points
// the note at the script's "customer/name" (two stores), and a handler for the
// fatal signals writes the note to a file the supervisor reads when it reaps the
// worker.

/// Where the note goes and which signals leave one: SIGSEGV, SIGBUS, SIGILL, SIGFPE
/// and SIGABRT get a handler (on an alternate stack, then the default action, so
/// the process still dies of the signal). Returns 0, or -1 with errno set.
int bh_crash_notes_install(const char *path);

/// Gives the calling thread an alternate signal stack, so that a crash by stack
/// overflow still writes its note. Call on every thread that runs scripts.
/// Returns 0, or -1 with errno set.
int bh_crash_notes_thread(void);

/// The note a crash now would leave (`len` bytes at `text`, kept alive by the
/// caller until cleared), or none.
extern const char *volatile bh_crash_note_text;
extern volatile size_t bh_crash_note_length;

/// Points the note at `text` for the call about to run. Why C: two stores the
/// signal handler reads, with no Swift in between.
static inline void bh_crash_note_set(const char *text, size_t len) {
    bh_crash_note_length = len;
    bh_crash_note_text = text;
}

/// No script runs now: a crash leaves no note.
static inline void bh_crash_note_clear(void) {
    bh_crash_note_text = NULL;
}

// MARK: - Signals

/// Installs `handler` for `signal` with SA_RESTART and nothing blocked while it
/// runs: interrupted reads and writes resume; `epoll_wait` and reads with a receive
/// timeout still return EINTR, which their callers retry. Returns 0, or -1 with
/// errno set. Why C: `struct sigaction` is a union Swift cannot fill portably.
int bh_set_signal_handler(int signal, void (*handler)(int));

// MARK: - Signals through a pipe

/// Makes `signal` (SIGTERM, say) write one byte to a pipe whose read end is
/// returned (close-on-exec), for a thread to block on. Returns -1 with errno set.
///
/// Why not a Dispatch signal source: on Linux it polls a signalfd, and the kernel
/// wakes every signalfd poller of a process on every signal to any of its threads.
/// A worker's instruction-budget tick is 2,000 signals a second to its event loop
/// thread; each woke the Dispatch thread, which then preempted the event loop on
/// its core (about 7% of a worker's throughput).
int bh_signal_pipe(int signal);

// MARK: - Event loop
//
// The worker's data plane is one thread around `epoll_wait`. These wrap the calls
// whose structs Swift should not lay out itself (`struct epoll_event` is packed on
// x86-64) and name the event bits as plain constants.

#include <stdint.h>

/// Readable (or the peer closed: a read then returns 0).
static const uint32_t BH_EVENT_READ = 0x001;   // EPOLLIN
/// Writable again after a short write.
static const uint32_t BH_EVENT_WRITE = 0x004;  // EPOLLOUT
/// An error on the descriptor (always reported).
static const uint32_t BH_EVENT_ERROR = 0x008;  // EPOLLERR
/// Hung up (always reported).
static const uint32_t BH_EVENT_HANGUP = 0x010; // EPOLLHUP
/// The peer shut its side down (half-close).
static const uint32_t BH_EVENT_PEER_CLOSED = 0x2000; // EPOLLRDHUP

/// A new epoll instance (close-on-exec), or -1 with errno set.
int bh_epoll_create(void);

/// Adds `fd` (`add` = 1) or changes its interest (`add` = 0): level-triggered
/// `events`, reported with `token`. Returns 0, or -1 with errno set.
int bh_epoll_watch(int epoll, int fd, int add, uint32_t events, uint64_t token);

/// Removes `fd`. Returns 0, or -1 with errno set.
int bh_epoll_forget(int epoll, int fd);

/// Waits up to `timeout_ms` (-1: forever) for at most `max` (up to 256) ready
/// descriptors; fills `tokens` and `events` and returns how many, or -1 with errno
/// set (EINTR when a signal came first).
int bh_epoll_wait(int epoll, uint64_t *tokens, uint32_t *events, int max, int timeout_ms);

/// A non-blocking, close-on-exec eventfd, or -1 with errno set.
int bh_eventfd(void);

/// Makes `fd` non-blocking and turns Nagle off (TCP_NODELAY) on it.
/// Returns 0, or -1 with errno set.
int bh_prepare_connection(int fd);

/// A relaxed atomic load and store of a 64-bit word, for memory shared between the
/// workers of a pool (a mapped file; Swift's atomics live in Swift values only).
static inline int64_t bh_shared_load(const int64_t *word) {
    return __atomic_load_n(word, __ATOMIC_RELAXED);
}
static inline void bh_shared_store(int64_t *word, int64_t value) {
    __atomic_store_n(word, value, __ATOMIC_RELAXED);
}

#endif
