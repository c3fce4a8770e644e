/*
 * main.c -- porticod's command line: validate (-t), dump (-T), version
 * (-V), or run the master.  Calls: conf.c, master.c, log.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "conf.h"
#include "evio.h"
#include "log.h"
#include "master.h"
#include "tls.h"

/* sysexits.h's EX_USAGE and EX_CONFIG, which systemd also knows. */
#define EXIT_USAGE 64
#define EXIT_CONFIG 78

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONF SYSCONFDIR "/portico/portico.yaml"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: porticod [-c FILE] [-t] [-T] [-V] [-h]\n"
            "  -c FILE  configuration file (default %s)\n"
            "  -t       check the configuration and exit: 0 when valid,\n"
            "           78 with every error found otherwise\n"
            "  -T       check, then print the effective configuration with\n"
            "           defaults filled in\n"
            "  -V       print the version and build options\n"
            "  -h       this help\n"
            "Signals: HUP reload, TERM/INT fast stop, QUIT graceful stop,\n"
            "USR1 reopen log files.  See porticod(8).\n",
            DEFAULT_CONF);
}

static void version(void)
{
    printf("porticod %s\n", PACKAGE_VERSION);
    printf("libevent %s, %s, %s\n", event_get_version(), conf_yaml_version(),
           tls_version());
    printf("build: %s\n", PT_BUILD_OPTIONS);
}

/* The master re-reads the file on SIGHUP from wherever it is then, so
 * keep an absolute path. */
static char *absolute_path(const char *path)
{
    char cwd[PATH_MAX], *out;

    if (path[0] == '/')
        return strdup(path);
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return strdup(path);
    if (asprintf(&out, "%s/%s", cwd, path) < 0)
        return NULL;
    return out;
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_CONF;
    int test = 0, dump = 0, opt, status;
    struct conf_diag diag = {0};
    struct conf *conf;
    char *abspath;

    evio_mem_init();
    while ((opt = getopt(argc, argv, "c:tTVh")) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': test = 1; break;
        case 'T': dump = 1; break;
        case 'V': version(); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "porticod: unexpected argument \"%s\"\n",
                argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }
    abspath = absolute_path(path);
    if (abspath == NULL) {
        fprintf(stderr, "porticod: out of memory\n");
        return 1;
    }
    conf = conf_load_file(abspath, &diag);
    if (conf && tls_check_conf(conf, &diag) < 0)
        conf_free(&conf);
    for (size_t i = 0; i < diag.n; i++)
        fprintf(stderr, "%s\n", diag.msgs[i]);
    if (conf == NULL) {
        fprintf(stderr, "porticod: %zu error%s in %s; %s\n", diag.n,
                diag.n == 1 ? "" : "s", abspath,
                test || dump ? "invalid" : "not started");
        conf_diag_fini(&diag);
        free(abspath);
        return EXIT_CONFIG;
    }
    conf_diag_fini(&diag);
    if (dump)
        conf_dump(conf, stdout);
    if (test || dump) {
        fprintf(stderr, "porticod: %s: configuration is valid\n", abspath);
        conf_free(&conf);
        free(abspath);
        return 0;
    }
    status = master_run(conf, abspath);
    free(abspath);
    return status;
}
