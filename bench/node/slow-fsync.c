/*
 * FSYNC_DELAY_US=<µs> of bench/node/run.ts: LD_PRELOAD'ed into the node under test (only), it makes
 * every fsync and fdatasync return that many microseconds later — a disk whose flushes are slower
 * than this VM's (e.g. network-attached block storage, ~0.5–2 ms). The real call still runs first.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void hold(void) {
  const char *us = getenv("MW_BENCH_FSYNC_DELAY_US");
  if (!us) return;
  long v = atol(us);
  if (v <= 0) return;
  struct timespec d = { v / 1000000, (v % 1000000) * 1000L };
  nanosleep(&d, NULL);
}

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

int fsync(int fd) {
  if (!real_fsync) real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  int r = real_fsync(fd);
  hold();
  return r;
}

int fdatasync(int fd) {
  if (!real_fdatasync) real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  int r = real_fdatasync(fd);
  hold();
  return r;
}
