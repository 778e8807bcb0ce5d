/*
 * spread.c - the spread of per-neuron mean rates (docs/losses.md "Data and notation"): m, sigma_c
 * and the gradients of sigma_c and sigma_c / m, shared by rnn and fr_dist.
 */
#include "internal.h"

#include <math.h>

crl_spread crl_spread_of(const double *mean, int64_t n, double correction)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += mean[i];
    double m = sum / (double) n, ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (mean[i] - m) * (mean[i] - m);
    double denom = (double) n - correction;
    return (crl_spread){m, sqrt(ss / denom), denom};
}

/* d sigma / d mu_j = (mu_j - m) / ((N - c) sigma), since sum_i (mu_i - m) = 0. */
void crl_spread_grad_sd(const double *mean, int64_t n, crl_spread s, double scale, double *g)
{
    if (s.sigma == 0)
        return;
    double k = scale / (s.denom * s.sigma);
    for (int64_t i = 0; i < n; i++)
        g[i] += k * (mean[i] - s.m);
}

/* d (sigma / m) / d mu_j = (mu_j - m) / ((N - c) sigma m) - sigma / (N m^2). */
void crl_spread_grad_cv(const double *mean, int64_t n, crl_spread s, double scale, double *g)
{
    double shift = scale * s.sigma / ((double) n * s.m * s.m);
    double k = s.sigma == 0 ? 0 : scale / (s.denom * s.sigma * s.m);
    for (int64_t i = 0; i < n; i++)
        g[i] += k * (mean[i] - s.m) - shift;
}
