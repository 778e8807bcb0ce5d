/*
 * replay.c - runs a fuzz target (tests/fuzz/fuzz_*.c) without libFuzzer, on
 * every file of the directories (or the files) named on the command line: the
 * seed corpora and the crash regressions (tests/fuzz/regressions/TARGET),
 * replayed by `make check` (tests/fuzz_replay.sh) with the build's compiler
 * and sanitizers.  A broken promise aborts (fuzz_require).
 *
 *   replay_TARGET PATH...
 */
#include "fuzz.h"

#include <dirent.h>
#include <sys/stat.h>

static int replayed;

static void replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        exit(2);
    }
    uint8_t *data = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? 2 * cap : 4096;
            data = realloc(data, cap);
            fuzz_require(data != NULL);
        }
        size_t n = fread(data + size, 1, cap - size, f);
        if (n == 0)
            break;
        size += n;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    replayed++;
}

static void replay_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: no %s\n", path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        replay_file(path);
        return;
    }
    DIR *d = opendir(path);
    fuzz_require(d != NULL);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        replay_file(file);
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    for (int k = 1; k < argc; k++)
        replay_path(argv[k]);
    printf("replayed %d input(s)\n", replayed);
    return 0;
}
