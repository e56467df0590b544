// Kiln's loopback forwarder, run by node INSIDE the fetch sandbox:
//   node forwarder.mjs <unix socket> -- <command> [args...]
// Listens on 127.0.0.1 (an ephemeral port of the sandbox's own, otherwise
// empty, network namespace), pipes every connection to the unix socket of
// Kiln's filtering egress proxy on the host, and runs the command with the
// proxy variables npm, cargo and curl read pointing at that port. It adds no
// reach: the command could connect to the socket itself. Exits with the
// command's status. Plain JavaScript: it runs without Kiln's TypeScript loader.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { constants } from 'node:os';
import process from 'node:process';

const [socketPath, separator, ...command] = process.argv.slice(2);
if (!socketPath || separator !== '--' || command.length === 0) {
  process.stderr.write('usage: forwarder.mjs <unix socket> -- <command> [args...]\n');
  process.exit(2);
}

const server = net.createServer((client) => {
  const upstream = net.connect(socketPath);
  client.pipe(upstream);
  upstream.pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
});

server.listen(0, '127.0.0.1', () => {
  const proxy = `http://127.0.0.1:${server.address().port}`;
  // Runs INSIDE the sandbox, in the environment Kiln built for it: reading it is how Kiln's settings reach here.
  const env = { ...process.env };
  for (const name of ['NO_PROXY', 'no_proxy', 'npm_config_noproxy']) delete env[name];
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'npm_config_proxy', 'npm_config_https_proxy', 'CARGO_HTTP_PROXY']) env[name] = proxy;
  const child = spawn(command[0], command.slice(1), { stdio: 'inherit', env });
  child.on('error', (error) => {
    process.stderr.write(`kiln forwarder: cannot run ${command[0]}: ${error.message}\n`);
    process.exit(127);
  });
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (constants.signals[signal] ?? 0)));
});
