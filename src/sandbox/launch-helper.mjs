/*
 * kiln launch helper (launcher-host.ts, decision 0047): starts the warm
 * pool's sandbox launchers on behalf of the worker process, so that the
 * worker — which in `kiln serve` is also the API and its embedded database,
 * ~560 MB — is never forked on a build's path. Starting a program forks the
 * process that starts it, and the fork of a large one holds its event loop
 * for tens to hundreds of milliseconds; this process is small.
 *
 * Plain JavaScript, run by `node` without any loader. It talks to its parent
 * over the IPC channel only:
 *
 *   ← { type: 'launch', id, script, argv, uid, gid, files }
 *       files: the launcher's descriptors from fd 4 on: a path (opened
 *       read-only here) or 'collect' (a pipe).
 *   → { type: 'started', id, pid }  or  { type: 'failed', id, message }
 *   → { type: 'stdio', id, fd } with the socket of each pipe (0–3 and every
 *       'collect'), then { type: 'handed', id }: sent only once every socket
 *       above has been received and this process has closed its copy (Node
 *       sends queued messages after the last handle's acknowledgement).
 *   → { type: 'exit', id, code, signal }
 *
 * The launcher is spawned exactly as supervise.ts's spawnLauncher spawns it
 * (bash, detached, the run's uid and gid, PATH only, cwd /). Its script
 * first waits for one byte on stdin, written by the parent after `handed`,
 * so nothing is written to a pipe while this process still holds it.
 *
 * The helper ends when its parent goes (the channel closes); the sandboxes
 * it started die with it (bwrap --die-with-parent: the launcher execs bwrap).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import process from 'node:process';

const LAUNCHER_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

process.on('disconnect', () => process.exit(0));
process.on('message', (message) => {
  if (message && message.type === 'launch') launch(message);
});

function launch({ id, script, argv, uid, gid, files }) {
  const opened = [];
  let child;
  try {
    for (const file of files) opened.push(file === 'collect' ? 'pipe' : openSync(file, 'r'));
    child = spawn('/bin/bash', ['--norc', '--noprofile', '-c', script, 'kiln-launch', ...argv], {
      detached: true,
      uid,
      gid,
      env: LAUNCHER_ENV,
      cwd: '/',
      stdio: ['pipe', 'pipe', 'pipe', 'pipe', ...opened],
    });
  } catch (error) {
    process.send({ type: 'failed', id, message: String(error && error.message) });
    return;
  } finally {
    // The launcher holds its own copies of the descriptors.
    for (const fd of opened) if (typeof fd === 'number') closeSync(fd);
  }
  let started = false;
  child.on('error', (error) => {
    if (!started) process.send({ type: 'failed', id, message: String(error && error.message) });
  });
  if (child.pid === undefined) return;
  started = true;
  child.on('exit', (code, signal) => process.send({ type: 'exit', id, code, signal }));
  process.send({ type: 'started', id, pid: child.pid });
  child.stdio.forEach((stream, fd) => {
    if (stream) process.send({ type: 'stdio', id, fd }, stream);
  });
  process.send({ type: 'handed', id });
}
