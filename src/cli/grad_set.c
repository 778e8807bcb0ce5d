/*
 * grad_set.c - a directory's gradient files as one unit (see grad_set.h).
 */
#include "cli/grad_set.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* out = a/b; false if too long. */
static bool join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    return n >= 0 && (size_t) n < cap;
}

/* mkdir -p: creates dir and its missing parents. */
static int make_directories(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int) sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0777) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(path, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

static void sync_directory(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* The generation `current` names ("gen-XXXXXX"), or "" when there is none. */
static void current_generation(const char *store, char *out, size_t cap)
{
    char link[PATH_MAX];
    out[0] = '\0';
    if (!join(link, sizeof link, store, "current"))
        return;
    ssize_t n = readlink(link, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
}

/* Points store/current at gen with one rename (a symlink made beside it). */
static int switch_current(const char *store, const char *gen, crl_error *err)
{
    char next[PATH_MAX], current[PATH_MAX];
    if (!join(next, sizeof next, store, "next-") || !join(current, sizeof current, store, "current"))
        return crl_fail(err, CRL_ERR_IO, "'%s': the name is too long", store);
    size_t n = strlen(next);
    snprintf(next + n, sizeof next - n, "%s", gen + 4); /* next-XXXXXX beside gen-XXXXXX */
    unlink(next);
    if (symlink(gen, next) != 0)
        return crl_fail(err, CRL_ERR_IO, "cannot create '%s': %s", next, strerror(errno));
    if (rename(next, current) != 0) {
        crl_fail(err, CRL_ERR_IO, "cannot rename '%s' to '%s': %s", next, current,
                 strerror(errno));
        unlink(next);
        return err->code;
    }
    sync_directory(store);
    return CRL_OK;
}

/* Removes a generation directory and the files in it; false if it held
 * something else. */
static bool remove_generation(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        char file[PATH_MAX];
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0
                && join(file, sizeof file, path, e->d_name))
                unlink(file);
        closedir(d);
    }
    return rmdir(path) == 0;
}

/*
 * Removes every generation that is neither current nor locked by a running
 * generation, and their next-* links: what interrupted runs left.  The
 * current target is read again after taking a lock, as a run releases its
 * lock only after switching to its generation.  Returns how many.
 */
static int remove_leftovers(const char *store)
{
    DIR *d = opendir(store);
    if (d == NULL)
        return 0;
    int removed = 0;
    struct dirent *e;
    char path[PATH_MAX], current[PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        bool gen = strncmp(e->d_name, "gen-", 4) == 0, next = strncmp(e->d_name, "next-", 5) == 0;
        if ((!gen && !next) || !join(path, sizeof path, store, e->d_name))
            continue;
        if (next) {
            char target[PATH_MAX], sibling[PATH_MAX];
            snprintf(target, sizeof target, "gen-%s", e->d_name + 5);
            struct stat st;
            if (join(sibling, sizeof sibling, store, target) && lstat(sibling, &st) != 0)
                unlink(path);
            continue;
        }
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            current_generation(store, current, sizeof current);
            if (strcmp(current, e->d_name) != 0 && remove_generation(path))
                removed++;
        }
        close(fd);
    }
    closedir(d);
    return removed;
}

static int link_name(const char *dir, const char *name, crl_error *err);

/* Regular files DIR/NAME of an earlier version: hard links into a
 * generation made current, then each name replaced by its link, so that
 * every name shows the same data throughout. */
static int adopt_regular_files(const char *dir, const char *store, const char *const *names,
                               int n, crl_error *err)
{
    char path[PATH_MAX], current[PATH_MAX];
    struct stat st;
    bool any = false;
    current_generation(store, current, sizeof current);
    for (int k = 0; k < n; k++)
        any |= join(path, sizeof path, dir, names[k]) && lstat(path, &st) == 0
               && S_ISREG(st.st_mode);
    if (!any || current[0] != '\0')
        return CRL_OK;
    char gen[PATH_MAX];
    if (!join(gen, sizeof gen, store, "gen-XXXXXX") || mkdtemp(gen) == NULL)
        return crl_fail(err, CRL_ERR_IO, "--grad-dir '%s': cannot create a generation: %s", dir,
                        strerror(errno));
    for (int k = 0; k < n; k++) {
        char to[PATH_MAX];
        if (join(path, sizeof path, dir, names[k]) && lstat(path, &st) == 0
            && S_ISREG(st.st_mode) && join(to, sizeof to, gen, names[k]) && link(path, to) != 0) {
            crl_fail(err, CRL_ERR_IO, "--grad-dir '%s': cannot link '%s' into '%s': %s", dir,
                     path, gen, strerror(errno));
            remove_generation(gen);
            return err->code;
        }
    }
    if (switch_current(store, strrchr(gen, '/') + 1, err) != CRL_OK)
        return err->code;
    for (int k = 0; k < n; k++)
        if (join(path, sizeof path, dir, names[k]) && lstat(path, &st) == 0
            && S_ISREG(st.st_mode) && link_name(dir, names[k], err) != CRL_OK)
            return err->code;
    return CRL_OK;
}

/* DIR/NAME becomes a symlink to .ctrnn-loss/current/NAME (replacing a
 * regular file adopted into the current generation); anything else there
 * is refused. */
static int link_name(const char *dir, const char *name, crl_error *err)
{
    char path[PATH_MAX], target[PATH_MAX], have[PATH_MAX], temp[PATH_MAX];
    snprintf(target, sizeof target, "%s/current/%s", GRAD_STORE, name);
    if (!join(path, sizeof path, dir, name))
        return crl_fail(err, CRL_ERR_IO, "--grad-dir '%s': the name is too long", dir);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (S_ISLNK(st.st_mode)) {
            ssize_t len = readlink(path, have, sizeof have - 1);
            have[len > 0 ? len : 0] = '\0';
            if (strcmp(have, target) == 0)
                return CRL_OK;
        } else if (!S_ISREG(st.st_mode)) {
            return crl_fail(err, CRL_ERR_IO,
                            "cannot write '%s': it exists and is not a file (remove it)", path);
        }
    }
    snprintf(temp, sizeof temp, "%s/%s/link-%s", dir, GRAD_STORE, name);
    unlink(temp);
    if (symlink(target, temp) != 0 || rename(temp, path) != 0) {
        crl_fail(err, CRL_ERR_IO, "cannot link '%s' to '%s': %s", path, target, strerror(errno));
        unlink(temp);
        return err->code;
    }
    return CRL_OK;
}

/* After the switch: DIR/NAME links of names the set lacks now dangle. */
static void unlink_stale_name(const char *dir, const char *name)
{
    char path[PATH_MAX], have[PATH_MAX], target[PATH_MAX];
    struct stat st;
    snprintf(target, sizeof target, "%s/current/%s", GRAD_STORE, name);
    if (!join(path, sizeof path, dir, name) || lstat(path, &st) != 0 || !S_ISLNK(st.st_mode))
        return;
    ssize_t len = readlink(path, have, sizeof have - 1);
    have[len > 0 ? len : 0] = '\0';
    if (strcmp(have, target) == 0 && stat(path, &st) != 0)
        unlink(path);
}

int grad_set_begin(grad_set *s, const char *dir, const char *const *names, int n,
                   crl_error *err)
{
    *s = (grad_set){.lock = -1};
    char store[PATH_MAX];
    struct stat st;
    if (snprintf(s->dir, sizeof s->dir, "%s", dir) >= (int) sizeof s->dir
        || !join(store, sizeof store, dir, GRAD_STORE)
        || !join(s->gen, sizeof s->gen, store, "gen-XXXXXX")) {
        s->gen[0] = '\0';
        return crl_fail(err, CRL_ERR_IO, "--grad-dir '%s': the name is too long", dir);
    }
    s->gen[0] = '\0';
    if (make_directories(dir) != 0)
        return crl_fail(err, CRL_ERR_IO, "--grad-dir '%s': cannot create: %s", dir,
                        strerror(errno));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return crl_fail(err, CRL_ERR_IO, "--grad-dir '%s': not a directory", dir);
    if (mkdir(store, 0777) != 0 && errno != EEXIST)
        return crl_fail(err, CRL_ERR_IO, "--grad-dir '%s': cannot create '%s': %s", dir, store,
                        strerror(errno));
    if (lstat(store, &st) != 0 || !S_ISDIR(st.st_mode))
        return crl_fail(err, CRL_ERR_IO, "--grad-dir '%s': '%s' is not a directory", dir, store);
    if (adopt_regular_files(dir, store, names, n, err) != CRL_OK)
        return err->code;
    s->cleaned = remove_leftovers(store);
    join(s->gen, sizeof s->gen, store, "gen-XXXXXX");
    if (mkdtemp(s->gen) == NULL) {
        s->gen[0] = '\0';
        return crl_fail(err, CRL_ERR_IO, "--grad-dir '%s': cannot create a generation: %s", dir,
                        strerror(errno));
    }
    mode_t mask = umask(0);
    umask(mask);
    chmod(s->gen, 0777 & ~mask); /* mkdtemp makes it 0700 */
    s->lock = open(s->gen, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->lock < 0 || flock(s->lock, LOCK_EX) != 0) {
        crl_fail(err, CRL_ERR_IO, "'%s': cannot lock: %s", s->gen, strerror(errno));
        grad_set_abort(s);
        return err->code;
    }
    return CRL_OK;
}

bool grad_set_path(const grad_set *s, const char *name, char *out, size_t cap)
{
    return join(out, cap, s->gen, name);
}

/* ------------------------------------------------------------------------ */
/* Signals                                                                    */
/* ------------------------------------------------------------------------ */

/* The new generation's directory, while guarded. */
static char guard_gen[PATH_MAX];

/*
 * Who owns the new generation when a signal comes.  MPI's own threads do not
 * block SIGINT, SIGTERM or SIGHUP, so the handler may run in any thread while
 * the main thread goes on: blocking the signals in the main thread alone
 * would hand them to another thread.  The handler and the commit therefore
 * take the generation with one compare-and-swap each: the handler from
 * GUARDED to CLEANING (it removes the files, and the commit must not switch
 * to them), the commit from GUARDED to COMMITTING (a signal then waits, in
 * `deferred`, until the switch and the clean-up are done).
 */
enum { UNGUARDED, GUARDED, CLEANING, COMMITTING };
static atomic_int guard_state = UNGUARDED;
static atomic_int deferred = 0;

/* The signals the guard takes. */
static void guarded_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

/* Ends the process with sig as it would have ended without the handler
 * (in this thread, which may block sig: the guarding one does). */
static void die_of(int sig)
{
    signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    raise(sig);
}

/* The layout getdents64(2) fills its buffer with. */
struct gen_entry {
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};

/*
 * Removes the directory gen and every file in it: the gradients and what
 * MPI-IO keeps beside them (Open MPI's lock files, one per open file, when
 * the ranks are on more than one host; ROMIO's shared file pointers).
 * readdir is not async-signal-safe (it allocates): the entries are read with
 * the system call into a static buffer, and unlinked by name relative to
 * the directory.
 */
#ifndef SYS_getdents64
#error "grad_set.c reads a directory in a signal handler with getdents64 (Linux)"
#endif
static void remove_generation_now(const char *gen)
{
    static union {
        char bytes[8192];
        uint64_t align;
    } buf;
    int fd = open(gen, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    long n;
    while ((n = syscall(SYS_getdents64, fd, buf.bytes, sizeof buf.bytes)) > 0)
        for (long at = 0; at + (long) offsetof(struct gen_entry, name) < n;) {
            unsigned short reclen;
            memcpy(&reclen, buf.bytes + at + offsetof(struct gen_entry, reclen), sizeof reclen);
            const char *name = buf.bytes + at + offsetof(struct gen_entry, name);
            if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
                unlinkat(fd, name, 0);
            if (reclen == 0)
                break;
            at += reclen;
        }
    close(fd);
    rmdir(gen);
}

/* Async-signal-safe: lock-free atomics, open, getdents64, unlinkat, rmdir,
 * signal, raise. */
static void on_signal(int sig)
{
    int state = GUARDED;
    if (atomic_compare_exchange_strong(&guard_state, &state, CLEANING))
        remove_generation_now(guard_gen);
    else if (state == COMMITTING) {
        atomic_store(&deferred, sig);
        /* The commit may have finished between the two steps and missed it. */
        if (atomic_load(&guard_state) == COMMITTING)
            return;
    }
    die_of(sig);
}

static void unguard(void)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    atomic_store(&guard_state, UNGUARDED);
    sigset_t set;
    guarded_signals(&set);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* A thread that only takes the guarded signals (it never blocks them). */
static void *signal_taker(void *arg)
{
    (void) arg;
    sigset_t set;
    guarded_signals(&set);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    for (;;)
        pause();
    return NULL;
}

/*
 * The thread that writes the set blocks the guarded signals, and a thread of
 * the guard's own takes them.  A signal sent to the process goes to the main
 * thread first unless it blocks it, and waits there while that thread waits
 * in the kernel (an fsync of a large file, writes the page cache holds back,
 * a slow file system): past the second mpirun allows between its SIGTERM
 * and its SIGKILL (Open MPI's odls_base_sigkill_timeout).  Another thread
 * runs the handler at once, whatever this one is doing.  One taker for the
 * process; if it cannot be started, the writer keeps the signals unblocked
 * and takes them itself.
 */
static bool taker_started;

static void start_taker(void)
{
    pthread_attr_t attr;
    pthread_t thread;
    if (pthread_attr_init(&attr) != 0)
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    taker_started = pthread_create(&thread, &attr, signal_taker, NULL) == 0;
    pthread_attr_destroy(&attr);
}

static void hand_signals_to_a_taker(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, start_taker);
    if (taker_started) {
        sigset_t set;
        guarded_signals(&set);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    }
}

/* After a commit: a signal that came during it ends the process now. */
static void end_commit(void)
{
    unguard();
    int sig = atomic_exchange(&deferred, 0);
    if (sig != 0)
        die_of(sig);
}

void grad_set_guard(const grad_set *s)
{
    snprintf(guard_gen, sizeof guard_gen, "%s", s->gen);
    atomic_store(&deferred, 0);
    atomic_store(&guard_state, GUARDED);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    hand_signals_to_a_taker();
}

/* ------------------------------------------------------------------------ */

void grad_set_abort(grad_set *s)
{
    unguard();
    if (s->gen[0] != '\0') {
        remove_generation(s->gen);
        /* A store that held nothing before this run goes too. */
        char store[PATH_MAX];
        if (join(store, sizeof store, s->dir, GRAD_STORE))
            rmdir(store);
    }
    s->gen[0] = '\0';
    if (s->lock >= 0)
        close(s->lock);
    s->lock = -1;
}

int grad_set_commit(grad_set *s, const char *const *names, const bool *in_new, int n,
                    crl_error *err)
{
    char store[PATH_MAX], path[PATH_MAX], previous[PATH_MAX];
    join(store, sizeof store, s->dir, GRAD_STORE);
    /* The data first, then the names that point at it. */
    for (int k = 0; k < n; k++)
        if (in_new[k] && grad_set_path(s, names[k], path, sizeof path)) {
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0 || fsync(fd) != 0)
                crl_fail(err, CRL_ERR_IO, "cannot sync '%s': %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            if (err->code != CRL_OK)
                goto failed;
        }
    sync_directory(s->gen);
    for (int k = 0; k < n; k++)
        if (in_new[k] && link_name(s->dir, names[k], err) != CRL_OK)
            goto failed;
    /* A signal from the switch to the end of the clean-up waits for it; one
     * that came first is removing the generation and ends the process. */
    int state = GUARDED;
    if (!atomic_compare_exchange_strong(&guard_state, &state, COMMITTING) && state == CLEANING)
        for (;;)
            pause();
    current_generation(store, previous, sizeof previous);
    if (switch_current(store, strrchr(s->gen, '/') + 1, err) != CRL_OK) {
        atomic_store(&guard_state, GUARDED);
        int sig = atomic_exchange(&deferred, 0);
        if (sig != 0) /* the clean-up the signal waited for, now */
            on_signal(sig);
        goto failed;
    }
    for (int k = 0; k < n; k++)
        if (!in_new[k])
            unlink_stale_name(s->dir, names[k]);
    sync_directory(s->dir);
    close(s->lock);
    s->lock = -1;
    s->gen[0] = '\0';
    if (previous[0] != '\0' && join(path, sizeof path, store, previous))
        remove_generation(path);
    remove_leftovers(store);
    end_commit();
    return CRL_OK;
failed:
    grad_set_abort(s);
    return err->code;
}
