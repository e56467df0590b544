/*
 * kiln-slot-mounter: the mounts a prepared sandbox slot needs (decision 0034),
 * done in-process by one long-lived root helper per worker, because a mount(8)
 * started per run would cost more than the whole sandbox start.
 *
 * Requests arrive on stdin, one per record: fields separated by NUL, the record
 * ended by an empty field (two NULs). Each gets one reply line on stdout:
 * "ok" or "error <text>". EOF on stdin ends the helper.
 *
 *   share  DIR              DIR becomes a shared mount point (bind onto itself):
 *                           what is later mounted on it propagates into the
 *                           sandbox that bound DIR while it was empty.
 *   bind   SRC STAGE DIR    SRC is bound at the private STAGE, made nosuid,nodev
 *                           there, then bound onto DIR (so the copy that reaches
 *                           the sandbox carries those flags), and STAGE released.
 *   release DIR             detaches every mount stacked on DIR.
 *   tmpfs  DIR OPTIONS      mounts a tmpfs on DIR (nosuid, nodev) with OPTIONS
 *                           (size=…,nr_inodes=…,mode=…): a job's work dir.
 *   unmount DIR             unmounts DIR, detaching it if it is busy; DIR not
 *                           being a mount point (or missing) is not an error.
 *
 * The last two are volume.ts's work dirs: done here rather than by mount(8) and
 * umount(8) because starting a program forks the whole worker process, and a
 * large one (the API and its embedded database beside local workers) blocks its
 * event loop for tens of milliseconds per fork.
 *
 * Only the worker (root) talks to it, through a pipe: paths are the worker's own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#define MAX_FIELDS 4
#define MAX_FIELD 4096

static int reply(const char *what, int error) {
  if (error == 0) printf("ok\n");
  else printf("error %s: %s\n", what, strerror(error));
  return fflush(stdout) == 0;
}

static int share(const char *dir) {
  if (mount(dir, dir, NULL, MS_BIND, NULL) != 0) return errno;
  if (mount(NULL, dir, NULL, MS_SHARED, NULL) != 0) {
    int error = errno;
    umount2(dir, MNT_DETACH);
    return error;
  }
  return 0;
}

static int bind(const char *src, const char *stage, const char *dir) {
  if (mount(src, stage, NULL, MS_BIND, NULL) != 0) return errno;
  int error = 0;
  if (mount(NULL, stage, NULL, MS_PRIVATE, NULL) != 0) error = errno;
  else if (mount(NULL, stage, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, NULL) != 0) error = errno;
  else if (mount(stage, dir, NULL, MS_BIND, NULL) != 0) error = errno;
  umount2(stage, MNT_DETACH);
  return error;
}

static int release(const char *dir) {
  /* The work dir's bind, then the slot's own bind onto itself. */
  for (int i = 0; i < 8; i++) {
    if (umount2(dir, MNT_DETACH) != 0) return errno == EINVAL ? 0 : errno;
  }
  return 0;
}

static int mount_tmpfs(const char *dir, const char *options) {
  if (mount("kiln-work", dir, "tmpfs", MS_NOSUID | MS_NODEV, options) != 0) return errno;
  return 0;
}

static int unmount(const char *dir) {
  /* NOFOLLOW: a work dir that became a symlink is not followed to whatever it names. */
  if (umount2(dir, UMOUNT_NOFOLLOW) == 0) return 0;
  if (errno == EINVAL || errno == ENOENT) return 0; /* not mounted: nothing to do */
  /* Busy means a process still has it open; detach it so the host path is freed anyway. */
  if (umount2(dir, MNT_DETACH | UMOUNT_NOFOLLOW) != 0) return errno;
  return 0;
}

/* Reads one record; returns its field count, 0 at EOF, -1 for a malformed one (skipped to its end). */
static int read_record(char fields[MAX_FIELDS][MAX_FIELD]) {
  int count = 0, length = 0, bad = 0, c;
  while ((c = getchar()) != EOF) {
    if (c != '\0') {
      if (count >= MAX_FIELDS || length >= MAX_FIELD - 1) bad = 1;
      else fields[count][length++] = (char)c;
      continue;
    }
    if (length == 0) return bad ? -1 : count;
    if (count < MAX_FIELDS) fields[count][length] = '\0';
    count++;
    length = 0;
  }
  return 0;
}

int main(void) {
  static char fields[MAX_FIELDS][MAX_FIELD];
  for (;;) {
    int count = read_record(fields);
    if (count == 0) return 0;
    int ok;
    if (count == 2 && strcmp(fields[0], "share") == 0) ok = reply("share", share(fields[1]));
    else if (count == 4 && strcmp(fields[0], "bind") == 0) ok = reply("bind", bind(fields[1], fields[2], fields[3]));
    else if (count == 2 && strcmp(fields[0], "release") == 0) ok = reply("release", release(fields[1]));
    else if (count == 3 && strcmp(fields[0], "tmpfs") == 0) ok = reply("tmpfs", mount_tmpfs(fields[1], fields[2]));
    else if (count == 2 && strcmp(fields[0], "unmount") == 0) ok = reply("unmount", unmount(fields[1]));
    else ok = reply("request", EINVAL);
    if (!ok) return 1;
  }
}
