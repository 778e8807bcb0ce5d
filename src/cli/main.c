/*
 * main.c - the ctrnn-loss command: MPI start-up and the choice of command.
 *
 *     mpirun -np P ctrnn-loss eval  [options]   a loss on .npy files
 *     mpirun -np P ctrnn-loss demo  [options]   a simulated CTRNN, every loss type
 *                  ctrnn-loss types             the term types and parameters
 *
 * Every rank parses the same arguments and returns the same exit status.
 */
#include "cli.h"

#include <string.h>
#include <time.h>

double cli_startup_seconds, cli_started;

static const char usage[] =
    "usage: mpirun -np P ctrnn-loss COMMAND [OPTIONS]\n"
    "\n"
    "Exact, MPI-sharded losses and gradients for continuous-time recurrent\n"
    "neural networks: each rank holds a slice of the batch, every rank gets the\n"
    "global loss, bitwise identical for any number of ranks.\n"
    "\n"
    "commands:\n"
    "  eval    evaluate a loss (and its gradient) on NumPy .npy files\n"
    "  demo    simulate a small CTRNN and evaluate every loss type on it\n"
    "  types   list the loss term types and their parameters\n"
    "\n"
    "options:\n"
    "  -h, --help      show this help ('ctrnn-loss COMMAND --help' for a command)\n"
    "  -V, --version   show the version\n"
    "\n"
    "exit status: 0 success, 1 an input file, the I/O or the evaluation failed,\n"
    "2 a wrong command line, term specification or config file.\n"
    "\n"
    "the losses (formulas, parameters, errors): losses.md in the documentation\n"
    "directory (docs/losses.md in the source tree); man ctrnn-loss.\n";

static int run(crl_context *ctx, int argc, char **argv)
{
    bool root = crl_context_rank(ctx) == 0;
    if (argc < 2) {
        cli_error(ctx, "no command given (eval, demo or types); see ctrnn-loss --help");
        return CLI_EXIT_USAGE;
    }
    const char *command = argv[1];
    if (strcmp(command, "-h") == 0 || strcmp(command, "--help") == 0 || strcmp(command, "help") == 0) {
        if (root)
            fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(command, "-V") == 0 || strcmp(command, "--version") == 0) {
        if (root)
            printf("ctrnn-loss %s (library %s)\n", PACKAGE_VERSION, crl_version());
        return CLI_EXIT_OK;
    }
    if (strcmp(command, "eval") == 0)
        return cli_eval(ctx, argc - 1, argv + 1);
    if (strcmp(command, "demo") == 0)
        return cli_demo(ctx, argc - 1, argv + 1);
    if (strcmp(command, "types") == 0) {
        if (argc > 2) {
            cli_error(ctx, "types takes no arguments, got '%s'", argv[2]);
            return CLI_EXIT_USAGE;
        }
        if (root)
            cli_print_types(stdout);
        return CLI_EXIT_OK;
    }
    cli_error(ctx, "unknown command '%s' (eval, demo or types); see ctrnn-loss --help", command);
    return CLI_EXIT_USAGE;
}

/* Wall-clock seconds; MPI_Wtime cannot be called before MPI_Init. */
static double seconds_now(void)
{
    struct timespec ts;
    if (timespec_get(&ts, TIME_UTC) != TIME_UTC)
        return 0;
    return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
}

int main(int argc, char **argv)
{
    /* As near the process's start as the program sees it (the launcher's
     * and the loader's time before main are not visible portably). */
    double before = seconds_now();
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fputs("ctrnn-loss: error: MPI_Init failed\n", stderr);
        return CLI_EXIT_FAILED;
    }
    cli_started = MPI_Wtime();
    double after = seconds_now();
    cli_startup_seconds = before > 0 && after > before ? after - before : 0;
    crl_context *ctx = NULL;
    int status;
    if (crl_context_create(MPI_COMM_WORLD, &ctx) != CRL_OK) {
        fputs("ctrnn-loss: error: cannot create the MPI context\n", stderr);
        status = CLI_EXIT_FAILED;
    } else {
        status = run(ctx, argc, argv);
        fflush(stdout);
        crl_context_destroy(&ctx);
    }
    MPI_Finalize();
    return status;
}
