// Lazy instruction budgets: the count hook armed by a timer signal.
//
// Any hook makes Lua 5.4 call into luaG_traceexec before every instruction, which
// costs about 12% of a busy handler even when the hook itself rarely fires. A
// large budget does not need counting from the first instruction: a call that ends
// quickly cannot have spent it. So a call with a budget of BH_LAZY_MIN_BUDGET or
// more starts with no hook, and a periodic timer (CLOCK_MONOTONIC, BH_TICK_NS)
// sends a signal to the thread running it. The first tick that lands inside the
// call installs the count hook on the thread running Lua at that moment, as lua.c
// does from its SIGINT handler (lua_sethook is safe to call from a signal handler;
// the interpreter rechecks its trap on every jump and call), and charges
// BH_LAZY_CHARGE instructions for the time before it. Between two deliveries the
// thread runs at most one period, so the charge covers whatever ran unhooked; the
// hook counts the rest exactly, sticky once the budget is spent, as before.
//
// The signal goes only to threads that run lazy calls; a thread's timer stops after
// BH_IDLE_TICKS ticks without a call, so an idle worker is not woken, and starts
// again with the next lazy call (one system call).

// SIGEV_THREAD_ID and gettid are Linux's own: ask for them before any header.
#define _GNU_SOURCE

#include "bh_internal.h"
#include "bh_posix.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int bh_lazy_hook_enabled = 1;

/// Ticks in a row without a call before a thread's timer stops (10 ms).
#define BH_IDLE_TICKS 20

/// The context whose call runs on this thread now, or NULL between calls. Read by
/// the signal handler on the same thread.
static __thread bh_context *volatile bh_tick_current;

/// This thread's timer: 0 none yet, 1 ticking, 2 stopped while idle, -1 failed
/// (the thread counts every call instead).
static __thread volatile int bh_tick_state;
static __thread timer_t bh_tick_timer;
static __thread volatile int bh_tick_idle;

static pthread_once_t bh_tick_once = PTHREAD_ONCE_INIT;
static int bh_tick_signal;
static int bh_tick_ready;
/// Deletes a thread's timer when the thread ends: a timer aimed at a thread that
/// is gone would go on expiring in the kernel.
static pthread_key_t bh_tick_key;

static void bh_tick_thread_ended(void *value) {
    (void)value;
    if (bh_tick_state == 1 || bh_tick_state == 2) {
        (void)timer_delete(bh_tick_timer);
        bh_tick_state = 0;
    }
}

int bh_set_lazy_hook(int enabled) {
    int previous = bh_lazy_hook_enabled;
    bh_lazy_hook_enabled = enabled != 0;
    return previous;
}

int bh_lazy_hook(void) {
    return bh_lazy_hook_enabled;
}

static void bh_tick_arm(int on) {
    struct itimerspec spec;
    memset(&spec, 0, sizeof spec);
    if (on) {
        spec.it_value.tv_nsec = BH_TICK_NS;
        spec.it_interval.tv_nsec = BH_TICK_NS;
    }
    (void)timer_settime(bh_tick_timer, 0, &spec, NULL);
}

/// The tick. Async-signal-safe: reads this thread's variables, calls lua_sethook
/// and timer_settime, and keeps errno.
static void bh_on_tick(int sig) {
    (void)sig;
    int saved = errno;
    bh_context *ctx = bh_tick_current;
    if (ctx == NULL) {
        if (++bh_tick_idle >= BH_IDLE_TICKS && bh_tick_state == 1) {
            bh_tick_state = 2;
            bh_tick_arm(0);
        }
        errno = saved;
        return;
    }
    bh_tick_idle = 0;
    if (ctx->lazy && ctx->hook_count == 0) {
        ctx->budget -= BH_LAZY_CHARGE;
        int count = ctx->budget <= 0 ? 1 : (ctx->budget < BH_HOOK_PERIOD ? (int)ctx->budget : BH_HOOK_PERIOD);
        ctx->hook_count = count;
        lua_State *running = ctx->running;
        if (running != NULL) {
            lua_sethook(running, bh_hook, LUA_MASKCOUNT, count);
        }
    }
    errno = saved;
}

static void bh_tick_setup(void) {
    const char *forced = getenv("BULKHEAD_COUNT_HOOK");
    if (forced != NULL && strcmp(forced, "1") == 0) {
        bh_lazy_hook_enabled = 0;
        return;
    }
    // A real-time signal nobody else here uses (glibc keeps the first few below
    // SIGRTMIN for itself).
    bh_tick_signal = SIGRTMIN + 5;
    if (pthread_key_create(&bh_tick_key, bh_tick_thread_ended) != 0) {
        bh_lazy_hook_enabled = 0;
        return;
    }
    // Interrupted reads and writes resume; epoll_wait returns EINTR, which event
    // loops retry.
    if (bh_set_signal_handler(bh_tick_signal, bh_on_tick) != 0) {
        bh_lazy_hook_enabled = 0;
        return;
    }
    bh_tick_ready = 1;
}

/// Makes this thread's timer (first lazy call on the thread) and starts it.
static int bh_tick_start(void) {
    pthread_once(&bh_tick_once, bh_tick_setup);
    if (!bh_tick_ready) {
        return 0;
    }
    if (bh_tick_state == 0) {
        // Some threads (dispatch workers) block signals: this one must get through.
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, bh_tick_signal);
        if (pthread_sigmask(SIG_UNBLOCK, &set, NULL) != 0) {
            bh_tick_state = -1;
            return 0;
        }
        struct sigevent event;
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = bh_tick_signal;
        event._sigev_un._tid = gettid();
        if (timer_create(CLOCK_MONOTONIC, &event, &bh_tick_timer) != 0) {
            bh_tick_state = -1;
            return 0;
        }
        (void)pthread_setspecific(bh_tick_key, &bh_tick_key);
    }
    bh_tick_idle = 0;
    bh_tick_state = 1;
    bh_tick_arm(1);
    return 1;
}

void bh_call_enter(lua_State *L, bh_context *ctx) {
    ctx->running = L;
    if (!ctx->lazy) {
        bh_tick_current = NULL;
        return;
    }
    bh_tick_idle = 0;
    int state = bh_tick_state;
    if (state == 1 || (state != -1 && bh_tick_start())) {
        bh_tick_current = ctx;
        return;
    }
    // No timer on this thread: count this call from its first instruction.
    ctx->lazy = 0;
    ctx->hook_count = ctx->budget < BH_HOOK_PERIOD ? (int)ctx->budget : BH_HOOK_PERIOD;
    bh_sync_thread_hook(L, ctx);
}

void bh_call_leave(bh_context *ctx) {
    (void)ctx;
    bh_tick_current = NULL;
}
