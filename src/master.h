/*
 * master.h -- the master process: listeners, workers, signals, reload.
 * Calls: worker.c, listener.c, channel.c, conf.c, log.c.
 */
#ifndef PORTICO_MASTER_H
#define PORTICO_MASTER_H

#include "conf.h"

/*
 * Run the master with a validated config (owned from now on) loaded from
 * path (absolute; re-read on SIGHUP).  Returns the process exit status.
 */
int master_run(struct conf *conf, const char *path);

#endif
