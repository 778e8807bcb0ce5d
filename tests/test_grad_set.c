/*
 * test_grad_set.c - src/cli/grad_set.c when SIGINT comes in another thread
 * than the one that writes the set, as it does under MPI (whose threads do
 * not block the signal): a signal during the switch waits for it and its
 * clean-up, a signal whose clean-up has begun keeps the commit from
 * switching to the generation it removes, and a signal before the commit
 * removes the new generation, with the files MPI-IO left beside the set's
 * (lock files, on more than one host), and at once while the thread that
 * writes the set waits in the kernel.  Each case runs in a child process
 * that the signal ends; the parent checks what the directory holds.
 *
 * rename(2) and unlinkat(2) (the handler's) are wrapped (-Wl,--wrap) to
 * send the signal, or to slow the handler down, at the one moment each case
 * needs.
 */
#define _GNU_SOURCE /* clone */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "cli/grad_set.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NAME "d_x.npy"

int __real_rename(const char *from, const char *to);
int __real_unlinkat(int dir, const char *path, int flags);

/* Armed by a case: SIGINT to the process right after `current` is renamed. */
static atomic_int kill_after_switch;
/* Armed by a case: the handler's first unlinkat says so, then takes
 * 200 ms. */
static atomic_int slow_unlink;
static atomic_int unlink_started;

static void nap(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

int __wrap_rename(const char *from, const char *to)
{
    int rc = __real_rename(from, to);
    size_t n = strlen(to);
    if (rc == 0 && n >= 8 && strcmp(to + n - 8, "/current") == 0
        && atomic_exchange(&kill_after_switch, 0)) {
        kill(getpid(), SIGINT);
        nap(100); /* time for any thread to take it */
    }
    return rc;
}

int __wrap_unlinkat(int dir, const char *path, int flags)
{
    if (atomic_exchange(&slow_unlink, 0)) {
        atomic_store(&unlink_started, 1);
        nap(200);
    }
    return __real_unlinkat(dir, path, flags);
}

/* A thread that takes signals, as MPI's do. */
static void *idle_thread(void *arg)
{
    (void) arg;
    for (;;)
        pause();
    return NULL;
}

/* Writes one generation holding NAME with text, guarded. */
static void begin_set(grad_set *s, const char *dir, const char *text)
{
    const char *names[] = {NAME};
    crl_error err = {0};
    if (grad_set_begin(s, dir, names, 1, &err) != CRL_OK)
        _exit(90);
    char path[PATH_MAX];
    FILE *f = grad_set_path(s, NAME, path, sizeof path) ? fopen(path, "w") : NULL;
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        _exit(91);
    grad_set_guard(s);
}

static void commit_set(grad_set *s)
{
    const char *names[] = {NAME};
    const bool in_new[] = {true};
    crl_error err = {0};
    if (grad_set_commit(s, names, in_new, 1, &err) != CRL_OK)
        _exit(92);
}

enum {
    SIGNAL_IN_SWITCH,
    SIGNAL_WHILE_CLEANING,
    SIGNAL_BEFORE_COMMIT,
    SIGNAL_WITH_LOCK_FILE,
    SIGNAL_WHILE_WRITER_WAITS
};

/* The process the waiter of SIGNAL_WHILE_WRITER_WAITS signals, the
 * generation it watches, and the file it makes when it sees the generation
 * go (run_case looks for it). */
static pid_t writer;
static char waited_gen[PATH_MAX], seen_gone[PATH_MAX];
#define IN_TIME "removed-while-the-writer-waited"

/*
 * A process that shares the writer's memory (CLONE_VM) and keeps it waiting
 * in the kernel (CLONE_VFORK: waiting for the child's end, which no handled
 * signal interrupts, as an fsync of a large file does not) for up to 3 s.
 * It sends SIGINT to the writer's process, as mpirun does, once the writer
 * waits, then looks every 10 ms whether the generation is gone.  System
 * calls only: it runs on its own stack beside the writer's threads.
 */
__attribute__((no_sanitize("address", "undefined"))) static int waiter(void *arg)
{
    (void) arg;
    struct timespec tick = {0, 10 * 1000000L};
    syscall(SYS_kill, writer, SIGINT);
    for (int k = 0; k < 300; k++) {
        if (syscall(SYS_faccessat, AT_FDCWD, waited_gen, F_OK, 0) != 0) {
            long fd = syscall(SYS_openat, AT_FDCWD, seen_gone, O_WRONLY | O_CREAT, 0600);
            if (fd >= 0)
                syscall(SYS_close, fd);
            break;
        }
        syscall(SYS_nanosleep, &tick, NULL);
    }
    syscall(SYS_exit, 0);
    return 0;
}

/* The child: set A committed, set B written, then the case's signal. */
static void child(const char *dir, int which)
{
    grad_set s;
    begin_set(&s, dir, "A");
    commit_set(&s);
    pthread_t helper;
    if (pthread_create(&helper, NULL, idle_thread, NULL) != 0)
        _exit(93);
    begin_set(&s, dir, "B");
    switch (which) {
    case SIGNAL_IN_SWITCH:
        atomic_store(&kill_after_switch, 1);
        commit_set(&s);
        break;
    case SIGNAL_WHILE_CLEANING:
        atomic_store(&slow_unlink, 1);
        pthread_kill(helper, SIGINT);
        while (!atomic_load(&unlink_started))
            nap(1);
        commit_set(&s);
        break;
    case SIGNAL_WITH_LOCK_FILE: {
        /* Named as Open MPI's sharedfp/lockedfile names its own. */
        char path[PATH_MAX];
        FILE *f = grad_set_path(&s, NAME "-1234-5678.lock", path, sizeof path)
                      ? fopen(path, "w")
                      : NULL;
        if (f == NULL || fclose(f) != 0)
            _exit(94);
    }
        /* fall through - then the signal, as SIGNAL_BEFORE_COMMIT */
    case SIGNAL_BEFORE_COMMIT:
        pthread_kill(helper, SIGINT);
        nap(2000);
        break;
    case SIGNAL_WHILE_WRITER_WAITS: {
        static char stack[64 * 1024] __attribute__((aligned(16)));
        snprintf(waited_gen, sizeof waited_gen, "%s", s.gen);
        snprintf(seen_gone, sizeof seen_gone, "%s/" IN_TIME, dir);
        writer = getpid();
        if (clone(waiter, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL) < 0)
            _exit(95);
        nap(2000);
        break;
    }
    }
    _exit(0); /* the signal should have ended the process */
}

/* Runs the case in a child; returns what DIR's NAME reads ("" if none) and
 * checks that the child died of SIGINT and the store holds `current` and
 * its generation only. */
static void run_case(int which, const char *want)
{
    char dir[] = "/tmp/crl-grad-set.XXXXXX";
    assert_non_null(mkdtemp(dir));
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child(dir, which);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGINT);

    char path[PATH_MAX], text[8] = "";
    snprintf(path, sizeof path, "%s/%s", dir, NAME);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        if (fgets(text, sizeof text, f) == NULL)
            text[0] = '\0';
        fclose(f);
    }
    assert_string_equal(text, want);

    char store[PATH_MAX], current[PATH_MAX] = "";
    snprintf(store, sizeof store, "%s/%s", dir, GRAD_STORE);
    snprintf(path, sizeof path, "%s/current", store);
    ssize_t len = readlink(path, current, sizeof current - 1);
    current[len > 0 ? len : 0] = '\0';
    DIR *d = opendir(store);
    assert_non_null(d);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        entries++;
        if (strcmp(e->d_name, "current") != 0 && strcmp(e->d_name, current) != 0)
            fail_msg("the store holds '%s' besides current -> '%s'", e->d_name, current);
    }
    closedir(d);
    assert_int_equal(entries, 2);

    if (which == SIGNAL_WHILE_WRITER_WAITS) {
        /* The waiter saw the generation go before its 3 s were up; it
         * writes the file soon after the child's end. */
        snprintf(path, sizeof path, "%s/" IN_TIME, dir);
        int k = 0;
        while (access(path, F_OK) != 0 && k++ < 400)
            nap(10);
        if (access(path, F_OK) != 0)
            fail_msg("the signal waited for the writer's wait in the kernel to end");
    }

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* The switch is done when the signal comes: it waits for the earlier set's
 * removal, then ends the process; set B stands whole. */
static void test_signal_in_switch_waits(void **state)
{
    (void) state;
    run_case(SIGNAL_IN_SWITCH, "B");
}

/* The handler has begun removing set B when the commit starts: the commit
 * must not switch to it; set A stands. */
static void test_signal_while_cleaning_stops_commit(void **state)
{
    (void) state;
    run_case(SIGNAL_WHILE_CLEANING, "A");
}

/* A signal before the commit, in another thread: set B goes, A stands. */
static void test_signal_before_commit_removes_new_set(void **state)
{
    (void) state;
    run_case(SIGNAL_BEFORE_COMMIT, "A");
}

/* The same with a file of MPI-IO's in the new generation: it goes too, and
 * with it the generation. */
static void test_signal_removes_mpi_io_files(void **state)
{
    (void) state;
    run_case(SIGNAL_WITH_LOCK_FILE, "A");
}

/* A signal sent to the process while the thread that writes the set waits
 * in the kernel: another thread removes set B at once. */
static void test_signal_while_writer_waits(void **state)
{
    (void) state;
    run_case(SIGNAL_WHILE_WRITER_WAITS, "A");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_in_switch_waits),
        cmocka_unit_test(test_signal_while_cleaning_stops_commit),
        cmocka_unit_test(test_signal_before_commit_removes_new_set),
        cmocka_unit_test(test_signal_removes_mpi_io_files),
        cmocka_unit_test(test_signal_while_writer_waits),
    };
    return cmocka_run_group_tests_name("grad_set", tests, NULL, NULL);
}
