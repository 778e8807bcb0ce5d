/*
 * decompose.c - which block of the (batch, time) plane each rank reads
 * (--decompose, docs/losses.md "Decompositions"): the grid of ranks along
 * batch and time, and this rank's elements and steps of each batched input.
 */
#include "cli/eval.h"

#include <stdint.h>

/* Part part's share of n items over parts parts: the first n mod parts
 * get one more. */
static void shard(int64_t n, int64_t part, int64_t parts, int64_t *start, int64_t *count)
{
    int64_t base = n / parts, extra = n % parts;
    *start = part * base + (part < extra ? part : extra);
    *count = base + (part < extra);
}

/* Units of CRL_TIME_UNIT steps in time steps (the last one may be partial). */
static int64_t time_units(int64_t time)
{
    return time / CRL_TIME_UNIT + (time % CRL_TIME_UNIT != 0);
}

/*
 * --decompose auto when B < P.  Of the grids Pb x Pt <= P with Pb <= B and
 * Pt at most the units of T, the one whose largest block is smallest (in
 * batch elements x units: the slowest rank's work), among those the one of
 * fewest ranks (a rank more is one more partial sum in the reduction, a
 * split of time one more block boundary), then the one of most ranks along
 * batch.  Exact factorizations of P are not sought: B = 1, T = 6 units on 4
 * ranks is 1 x 3 (2 units each, the fourth rank empty), as fast as 1 x 4
 * (2, 2, 1, 1).  A grid with Pt = 1 is the batch decomposition: Pb = P.
 * O(B) steps.
 */
static void choose_grid(int64_t batch, int64_t time, int64_t ranks, int64_t *batch_ranks,
                        int64_t *time_ranks)
{
    int64_t units = time_units(time), best = INT64_MAX, best_used = 0;
    *batch_ranks = ranks;
    *time_ranks = 1;
    for (int64_t b = 1; b <= batch && b <= ranks; b++) {
        int64_t most = ranks / b < units ? ranks / b : units;
        int64_t per = (units + most - 1) / most, t = (units + per - 1) / per;
        /* At most B x units <= B x T: no overflow. */
        int64_t load = (batch + b - 1) / b * per, used = b * t;
        if (load < best || (load == best && used <= best_used)) {
            best = load;
            best_used = used;
            *batch_ranks = b;
            *time_ranks = t;
        }
    }
    if (*time_ranks == 1)
        *batch_ranks = ranks;
}

/*
 * The decomposition (--decompose) and this rank's block of each batched
 * input.  Rank r holds block (pb, pt) = (r / Pt, r % Pt) of the Pb x Pt
 * grid, nothing when r >= Pb Pt: the batch elements of slice pb of B over
 * Pb ranks and the time steps of range pt of T over Pt ranks, each split as
 * evenly as possible with the first ones one more (elements, or units of
 * CRL_TIME_UNIT steps: a range starts at a multiple of it and ends at one
 * or at T; a rank may get none).  --states1 is split by the same grid
 * over its own B1 and T1 (crl_loss_set_block_states1).  With Pt = 1 the
 * blocks are slices of the batch, as before time sharding.
 */
void eval_decompose(eval_run *r)
{
    int64_t ranks = crl_context_size(r->ctx), rank = crl_context_rank(r->ctx);
    const input *states1 = &r->in[CRL_ROLE_STATES1], *plane = NULL;
    for (int role = 0; role < CRL_FIRST_MATRIX_ROLE && plane == NULL; role++)
        if (r->in[role].given && role != CRL_ROLE_STATES1)
            plane = &r->in[role];
    if (plane == NULL && states1->given)
        plane = states1;
    r->batch = plane != NULL ? plane->batch : 0;
    r->time = plane != NULL ? plane->time : 0;

    r->batch_ranks = ranks;
    r->time_ranks = 1;
    if (r->opt.decompose == DECOMPOSE_GRID) {
        r->batch_ranks = r->opt.grid_batch;
        r->time_ranks = r->opt.grid_time;
    } else if (r->opt.decompose == DECOMPOSE_AUTO && plane != NULL && r->batch < ranks) {
        choose_grid(r->batch, r->time, ranks, &r->batch_ranks, &r->time_ranks);
    }
    r->blocks = r->time_ranks > 1 && plane != NULL;

    int64_t cells = r->batch_ranks * r->time_ranks;
    int64_t part_batch = rank / r->time_ranks, part_time = rank % r->time_ranks;
    for (int role = 0; role < CRL_FIRST_MATRIX_ROLE; role++) {
        input *x = &r->in[role];
        if (!x->given)
            continue;
        x->shard_start = x->shard_count = 0;
        x->time_start = 0;
        x->time_count = x->span = x->time;
        if (rank < cells)
            shard(x->batch, part_batch, r->batch_ranks, &x->shard_start, &x->shard_count);
        if (r->time_ranks == 1)
            continue;
        int64_t units = time_units(x->time), first, count;
        int64_t most = (units + r->time_ranks - 1) / r->time_ranks;
        shard(units, part_time, r->time_ranks, &first, &count);
        /* Units of a range are at most T / CRL_TIME_UNIT + 1: no overflow. */
        int64_t end = (first + count) * CRL_TIME_UNIT;
        x->time_start = first * CRL_TIME_UNIT;
        x->time_count = end < x->time ? end - x->time_start : x->time - x->time_start;
        x->span = most * CRL_TIME_UNIT < x->time ? most * CRL_TIME_UNIT : x->time;
        if (x->time_count <= 0 || x->shard_count == 0) /* an empty block */
            x->shard_start = x->shard_count = x->time_start = x->time_count = 0;
    }
}
