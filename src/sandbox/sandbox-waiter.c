/*
 * kiln-sandbox-waiter: the command of a prepared sandbox (decision 0034).
 * bwrap starts it, as the run's uid with seccomp applied, from a descriptor
 * of this binary (argv[1] names it: the binary is not inside the sandbox).
 *
 * It reports W on fd 3 (the launch status pipe) and reads its request on
 * stdin up to EOF: the cwd, the number of variables, NAME=VALUE each, then
 * the command, every field NUL-terminated. Then it does what bwrap does for a
 * fresh run, with bwrap's own messages and exit status on failure: reports L
 * and closes fd 3, changes to the cwd, replaces the environment, and execs
 * the command (searched in the new PATH, as bwrap's execvp does). EOF
 * without a request (the slot is discarded) ends it without running anything.
 *
 * A fresh run (no prepared sandbox) starts it as `waiter <fd> --started <mark
 * fd> <cwd> -- command...`: bwrap has already set the environment, so it
 * writes L on the mark fd, closes it, changes to the cwd and execs the
 * command, with bwrap's messages as above. The mark tells the supervisor that
 * bwrap's whole set-up (mounts included) succeeded: bwrap itself reports its
 * child's pid before mounting anything. The cwd is changed here, after the
 * mark, so a missing cwd stays the run's exit status 1 as in a prepared
 * sandbox rather than a failed set-up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The request is argv and environment: beyond this the kernel would refuse them anyway. */
#define MAX_REQUEST (4 * 1024 * 1024)

extern char **environ;

static size_t read_request(char *buffer) {
  size_t length = 0;
  for (;;) {
    ssize_t n = read(0, buffer + length, MAX_REQUEST - length);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n == 0 ? length : 0;
    length += (size_t)n;
    if (length >= MAX_REQUEST) return 0;
  }
}

/*
 * Marks the launch on `mark` and closes it, then does what bwrap does last:
 * changes to the cwd and execs the command, with bwrap's messages and exit
 * status on failure. Both modes end here.
 */
static int launch(int mark, const char *cwd, char **command) {
  if (write(mark, "L", 1) != 1) return 1;
  close(mark);
  if (chdir(cwd) != 0) {
    fprintf(stderr, "bwrap: Can't chdir to %s: %s\n", cwd, strerror(errno));
    return 1;
  }
  execvp(command[0], command);
  fprintf(stderr, "bwrap: execvp %s: %s\n", command[0], strerror(errno));
  return 1;
}

int main(int argc, char **argv) {
  if (argc > 1) close(atoi(argv[1]));
  /* A fresh run: bwrap set the environment; argv holds the mark fd, the cwd and the command. */
  if (argc > 6 && strcmp(argv[2], "--started") == 0 && strcmp(argv[5], "--") == 0) return launch(atoi(argv[3]), argv[4], argv + 6);
  if (write(3, "W", 1) != 1) return 0;
  char *buffer = malloc(MAX_REQUEST);
  if (buffer == NULL) return 0;
  size_t length = read_request(buffer);
  if (length == 0 || buffer[length - 1] != '\0') return 0;
  size_t count = 0;
  for (size_t i = 0; i < length; i++) count += buffer[i] == '\0';
  char **fields = calloc(count + 1, sizeof(char *));
  if (fields == NULL) return 0;
  for (size_t i = 0, start = 0, field = 0; i < length; i++) {
    if (buffer[i] != '\0') continue;
    fields[field++] = buffer + start;
    start = i + 1;
  }
  char *end = NULL;
  long variables = count >= 2 ? strtol(fields[1], &end, 10) : -1;
  if (variables < 0 || end == NULL || *end != '\0' || (size_t)variables + 3 > count) return 0;
  char **environment = fields + 2;
  char **command = fields + 2 + variables;
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull < 0 || dup2(devnull, 0) < 0) return 0;
  if (devnull != 0) close(devnull);
  /* The command needs a NULL after the environment: move the environment into its own array. */
  char **env = calloc((size_t)variables + 1, sizeof(char *));
  if (env == NULL) return 0;
  memcpy(env, environment, (size_t)variables * sizeof(char *));
  environ = env;
  return launch(3, fields[0], command);
}
