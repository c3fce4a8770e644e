/*
 * fuzz_conf.c -- libFuzzer target for the config loader.  Any bytes must
 * give either a config or at least one diagnostic (never both, never a
 * crash or a leak), every diagnostic must name the file, and a config
 * that loads must dump to YAML that loads again to the very same dump.
 * Plain C: builds with gcc too, where replay.c feeds it corpus files.
 * Calls: conf.h.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

#define NAME "fuzz.yaml"

/* abort() so that libFuzzer and the replay driver both report a crash. */
static void fuzz_require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_conf: %s\n", what);
        abort();
    }
}

static char *dump_string(const struct conf *conf)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    fuzz_require(f != NULL, "open_memstream failed");
    conf_dump(conf, f);
    fclose(f);
    return buf;
}

static void check_roundtrip(const struct conf *conf)
{
    struct conf_diag diag = {0};
    char *dump1 = dump_string(conf), *dump2;
    struct conf *again =
        conf_load_buffer("dump.yaml", dump1, strlen(dump1), &diag);

    for (size_t i = 0; i < diag.n; i++)
        fprintf(stderr, "%s\n", diag.msgs[i]);
    if (again == NULL)
        fprintf(stderr, "--- dump:\n%s", dump1);
    fuzz_require(again != NULL, "the dump of a good config does not load");
    dump2 = dump_string(again);
    fuzz_require(strcmp(dump1, dump2) == 0, "the dump changed on reload");
    conf_free(&again);
    conf_diag_fini(&diag);
    free(dump1);
    free(dump2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct conf_diag diag = {0};
    struct conf *conf =
        conf_load_buffer(NAME, (const char *)data, size, &diag);

    fuzz_require((conf == NULL) == (diag.n > 0),
                 "a config must come with no errors, or errors alone");
    for (size_t i = 0; i < diag.n; i++)
        fuzz_require(strncmp(diag.msgs[i], NAME ":", strlen(NAME) + 1) == 0,
                     "a diagnostic does not name the file");
    if (conf != NULL) {
        fuzz_require(conf->source_len == size &&
                         (size == 0 || memcmp(conf->source, data, size) == 0),
                     "conf->source differs from the input");
        check_roundtrip(conf);
    }
    conf_free(&conf);
    conf_diag_fini(&diag);
    return 0;
}
