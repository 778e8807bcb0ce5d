/*
 * grad_set.h - a directory's gradient files as one unit (POSIX, no MPI; rank
 * 0 calls these).
 *
 * Layout of DIR:
 *     DIR/.ctrnn-loss/gen-XXXXXX/d_*.npy   one generation: the files of a run
 *     DIR/.ctrnn-loss/current              symlink -> gen-XXXXXX, the set
 *     DIR/d_states.npy, ...                symlinks -> .ctrnn-loss/current/NAME
 * A run writes a new generation and switches `current` with one rename(2):
 * every name in DIR then shows the new set, none the earlier one.  Names of
 * the earlier set that the new one lacks are removed after the switch.
 * A running generation holds an flock(2) on its directory; a generation that
 * is neither current nor locked is what a killed run left, and the next run
 * removes it.  Only names of gradient files (the caller's list) are touched
 * in DIR.  Regular files with those names (from a version that wrote them in
 * place) are first adopted as the current generation by hard links.
 */
#ifndef CRL_CLI_GRAD_SET_H
#define CRL_CLI_GRAD_SET_H

#include "internal.h"

#include <limits.h>

#define GRAD_STORE ".ctrnn-loss"

typedef struct grad_set {
    char dir[PATH_MAX];        /* DIR as given                                */
    char gen[PATH_MAX];        /* DIR/.ctrnn-loss/gen-XXXXXX, "" when none    */
    int lock;                  /* descriptor holding the generation's flock   */
    int cleaned;               /* leftover generations removed by begin       */
} grad_set;

/*
 * Creates DIR (and parents) and its store if needed, adopts regular files of
 * the names[n] (gradient file names), removes what killed runs left, and
 * creates a new generation, locked.  CRL_ERR_IO with a message naming DIR.
 */
int grad_set_begin(grad_set *s, const char *dir, const char *const *names, int n,
                   crl_error *err);

/* The path of file name in the new generation; false if too long. */
bool grad_set_path(const grad_set *s, const char *name, char *out, size_t cap);

/*
 * Makes the new generation DIR's set: links DIR/NAME for each of its files
 * (in_new[k] for names[k]), switches `current`, removes the names the new set
 * lacks and the earlier generation.  On failure before the switch the earlier
 * set is untouched and the new generation removed.
 */
int grad_set_commit(grad_set *s, const char *const *names, const bool *in_new, int n,
                    crl_error *err);

/* Removes the new generation and its files (a failed run). */
void grad_set_abort(grad_set *s);

/*
 * Until grad_set_commit or grad_set_abort, SIGINT, SIGTERM and SIGHUP (sent
 * to the process, whichever thread takes them) remove the new generation
 * and every file in it (the gradients and whatever MPI-IO put beside them)
 * and then end the process with the signal, as it would have ended without
 * the handler.
 * From the moment grad_set_commit starts its switch to the end of its
 * clean-up, they wait for it instead.  The calling thread blocks them until
 * then, and a thread of the guard's own takes them: the clean-up does not
 * wait for this thread's system calls (an fsync) to end.
 */
void grad_set_guard(const grad_set *s);

#endif /* CRL_CLI_GRAD_SET_H */
