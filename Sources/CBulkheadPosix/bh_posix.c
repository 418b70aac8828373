#define _GNU_SOURCE
#include "bh_posix.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

int bh_send_fd(int socket, int fd_to_send) {
    char byte = 'F';
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union {
        struct cmsghdr align;
        char buffer[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);

    struct msghdr message = {0};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control.buffer;
    message.msg_controllen = sizeof control.buffer;

    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &fd_to_send, sizeof(int));

    ssize_t sent;
    do {
        sent = sendmsg(socket, &message, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    return sent == 1 ? 0 : -1;
}

int bh_recv_fd(int socket) {
    char byte = 0;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union {
        struct cmsghdr align;
        char buffer[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);

    struct msghdr message = {0};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control.buffer;
    message.msg_controllen = sizeof control.buffer;

    ssize_t received;
    do {
        received = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
    } while (received < 0 && errno == EINTR);
    if (received <= 0) {
        if (received == 0) errno = ECONNRESET;
        return -1;
    }
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    if (header == NULL || header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS
        || header->cmsg_len != CMSG_LEN(sizeof(int))) {
        errno = EBADMSG;
        return -1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(header), sizeof(int));
    return fd;
}

int bh_peer_uid(int socket, uid_t *uid) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
        return -1;
    }
    *uid = credentials.uid;
    return 0;
}

long long bh_resident_bytes(void) {
    FILE *file = fopen("/proc/self/statm", "r");
    if (file == NULL) return 0;
    long long size = 0, resident = 0;
    int matched = fscanf(file, "%lld %lld", &size, &resident);
    fclose(file);
    if (matched != 2) return 0;
    return resident * (long long)sysconf(_SC_PAGESIZE);
}

void bh_close_from(int lowest) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lowest, ~0U, 0) == 0) return;
#endif
    // Older kernels: walk /proc/self/fd.
    DIR *directory = opendir("/proc/self/fd");
    if (directory == NULL) return;
    int own = dirfd(directory);
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        int fd = atoi(entry->d_name);
        if (fd >= lowest && fd != own) close(fd);
    }
    closedir(directory);
}

int bh_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

int bh_take_fd(int pid, int target_fd) {
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_getfd)
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) return -1;
    int fd = (int)syscall(SYS_pidfd_getfd, pidfd, target_fd, 0);
    int saved = errno;
    close(pidfd);
    errno = saved;
    return fd;
#else
    (void)pid; (void)target_fd;
    errno = ENOSYS;
    return -1;
#endif
}

// MARK: - Crash notes

#include <fcntl.h>
#include <signal.h>

const char *volatile bh_crash_note_text;
volatile size_t bh_crash_note_length;

/// The note file's path, copied at install: the handler cannot allocate.
static char bh_crash_note_path[4096];

static const int bh_crash_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

/// Async-signal-safe: open, write and close only. SA_RESETHAND put the default
/// action back, so the signal ends the process once this returns (a fault repeats
/// its instruction; abort raises again).
static void bh_crash_write_note(int sig) {
    (void)sig;
    const char *text = bh_crash_note_text;
    size_t len = bh_crash_note_length;
    if (text == NULL || bh_crash_note_path[0] == '\0') {
        return;
    }
    /* O_NOFOLLOW: the note is truncated; never a file a link points at. */
    int fd = open(bh_crash_note_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        return;
    }
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n <= 0) {
            break;
        }
        text += n;
        len -= (size_t)n;
    }
    close(fd);
}

int bh_crash_notes_install(const char *path) {
    size_t n = strlen(path);
    if (n >= sizeof bh_crash_note_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(bh_crash_note_path, path, n + 1);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = bh_crash_write_note;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_ONSTACK | SA_RESETHAND;
    for (size_t i = 0; i < sizeof bh_crash_signals / sizeof bh_crash_signals[0]; i++) {
        if (sigaction(bh_crash_signals[i], &action, NULL) != 0) {
            return -1;
        }
    }
    return bh_crash_notes_thread();
}

int bh_crash_notes_thread(void) {
    // 64 KiB: the handler needs a few hundred bytes; never freed (the thread's life).
    size_t size = 64 * 1024;
    void *stack = malloc(size);
    if (stack == NULL) {
        errno = ENOMEM;
        return -1;
    }
    stack_t alternate;
    memset(&alternate, 0, sizeof alternate);
    alternate.ss_sp = stack;
    alternate.ss_size = size;
    if (sigaltstack(&alternate, NULL) != 0) {
        free(stack);
        return -1;
    }
    return 0;
}

// MARK: - Signals through a pipe

/// The write end per signal number (64: enough for the standard and real-time ones).
static int bh_signal_pipe_fds[65];

int bh_set_signal_handler(int sig, void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    return sigaction(sig, &action, NULL);
}

static void bh_signal_pipe_write(int sig) {
    int saved = errno;
    char byte = (char)sig;
    if (sig > 0 && sig <= 64 && bh_signal_pipe_fds[sig] > 0) {
        // Non-blocking: a full pipe already holds a wake-up, so losing this one is fine.
        (void)write(bh_signal_pipe_fds[sig], &byte, 1);
    }
    errno = saved;
}

int bh_signal_pipe(int sig) {
    if (sig <= 0 || sig > 64) {
        errno = EINVAL;
        return -1;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        return -1;
    }
    int flags = fcntl(fds[1], F_GETFL);
    if (flags < 0 || fcntl(fds[1], F_SETFL, flags | O_NONBLOCK) != 0) {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        errno = saved;
        return -1;
    }
    bh_signal_pipe_fds[sig] = fds[1];
    if (bh_set_signal_handler(sig, bh_signal_pipe_write) != 0) {
        int saved = errno;
        bh_signal_pipe_fds[sig] = 0;
        close(fds[0]);
        close(fds[1]);
        errno = saved;
        return -1;
    }
    return fds[0];
}

// MARK: - Event loop

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

_Static_assert(BH_EVENT_READ == EPOLLIN && BH_EVENT_WRITE == EPOLLOUT && BH_EVENT_ERROR == EPOLLERR
               && BH_EVENT_HANGUP == EPOLLHUP && BH_EVENT_PEER_CLOSED == EPOLLRDHUP,
               "event bits must match epoll's");

int bh_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int bh_epoll_watch(int epoll, int fd, int add, uint32_t events, uint64_t token) {
    struct epoll_event event = {.events = events, .data = {.u64 = token}};
    return epoll_ctl(epoll, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event);
}

int bh_epoll_forget(int epoll, int fd) {
    struct epoll_event unused = {0};
    return epoll_ctl(epoll, EPOLL_CTL_DEL, fd, &unused);
}

int bh_epoll_wait(int epoll, uint64_t *tokens, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event ready[256];
    if (max > 256) max = 256;
    int count = epoll_wait(epoll, ready, max, timeout_ms);
    for (int index = 0; index < count; index++) {
        tokens[index] = ready[index].data.u64;
        events[index] = ready[index].events;
    }
    return count;
}

int bh_eventfd(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

int bh_prepare_connection(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return -1;
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
