// Kiln's crate downloader, run by node INSIDE the fetch sandbox (through
// forwarder.mjs, so HTTP_PROXY names the loopback side of Kiln's egress proxy):
//   node crates.mjs <sparse index URL> <crates.json> <output dir>
// crates.json lists the locked crates [{name, version, checksum}]. Reads the
// registry's config.json for its download URL template, downloads each
// .crate, checks its sha256 against the lock, unpacks it into
// <output dir>/<name>-<version>/ and writes the .cargo-checksum.json a cargo
// directory source needs. No redirects are followed; every answer is capped.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { Buffer } from 'node:buffer';
import process from 'node:process';
import tls from 'node:tls';
import { URL } from 'node:url';

const MAX_CONFIG_BYTES = 64 * 1024;
const MAX_CRATE_BYTES = 64 * 1024 * 1024;
const [indexUrl, listFile, outDir] = process.argv.slice(2);

function fail(message) {
  process.stderr.write(`kiln crates: ${message}\n`);
  process.exit(1);
}

if (!indexUrl || !listFile || !outDir) fail('usage: crates.mjs <index URL> <crates.json> <output dir>');
// Runs INSIDE the fetch sandbox: its environment is the one Kiln built for it (the forwarder sets HTTP_PROXY).
const proxy = new URL(process.env.HTTP_PROXY ?? fail('HTTP_PROXY is not set'));

/** GET through the proxy: absolute URI for http, a CONNECT tunnel for https. */
function get(url, maxBytes) {
  return new Promise((resolve, reject) => {
    const onResponse = (response) => {
      if (response.statusCode !== 200) {
        let text = '';
        response.on('data', (chunk) => (text = (text + chunk).slice(0, 300)));
        response.on('end', () => reject(new Error(`GET ${url.href}: ${response.statusCode} ${text.trim()}`)));
        return;
      }
      const chunks = [];
      let size = 0;
      response.on('data', (chunk) => {
        size += chunk.length;
        if (size > maxBytes) response.destroy(new Error(`GET ${url.href}: larger than ${maxBytes} bytes`));
        else chunks.push(chunk);
      });
      response.on('end', () => resolve(Buffer.concat(chunks)));
      response.on('error', reject);
    };
    if (url.protocol === 'http:') {
      http.get({ host: proxy.hostname, port: proxy.port, path: url.href, headers: { host: url.host } }, onResponse).on('error', reject);
      return;
    }
    const authority = `${url.hostname}:${url.port || 443}`;
    const connect = http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: authority, headers: { host: authority } });
    connect.on('connect', (answer, socket) => {
      if (answer.statusCode !== 200) {
        socket.destroy();
        reject(new Error(`the egress proxy refused ${authority} (${answer.statusCode})`));
        return;
      }
      https.get(url, { createConnection: () => tls.connect({ socket, servername: url.hostname }) }, onResponse).on('error', reject);
    });
    connect.on('error', reject);
    connect.end();
  });
}

/** Cargo's dl template: {crate} {version} {prefix} {lowerprefix} {sha256-checksum}, else <dl>/<crate>/<version>/download. */
function downloadUrl(template, crate) {
  const prefix = crate.name.length <= 2 ? `${crate.name.length}` : crate.name.length === 3 ? `3/${crate.name[0]}` : `${crate.name.slice(0, 2)}/${crate.name.slice(2, 4)}`;
  if (!/\{(crate|version|prefix|lowerprefix|sha256-checksum)\}/.test(template)) return new URL(`${template.replace(/\/$/, '')}/${crate.name}/${crate.version}/download`);
  return new URL(template.replaceAll('{crate}', crate.name).replaceAll('{version}', crate.version).replaceAll('{prefix}', prefix).replaceAll('{lowerprefix}', prefix.toLowerCase()).replaceAll('{sha256-checksum}', crate.checksum));
}

try {
  const crates = JSON.parse(readFileSync(listFile, 'utf8'));
  const config = JSON.parse((await get(new URL('config.json', indexUrl), MAX_CONFIG_BYTES)).toString('utf8'));
  if (typeof config.dl !== 'string') fail('the registry config.json has no "dl" download URL');
  mkdirSync(outDir, { recursive: true });
  for (const crate of crates) {
    const data = await get(downloadUrl(config.dl, crate), MAX_CRATE_BYTES);
    const actual = createHash('sha256').update(data).digest('hex');
    if (actual !== crate.checksum) fail(`${crate.name} ${crate.version}: the registry's .crate has sha256 ${actual}, but Cargo.lock says ${crate.checksum}`);
    const archive = join(outDir, `.${crate.name}-${crate.version}.crate`);
    writeFileSync(archive, data);
    const untar = spawnSync('/usr/bin/tar', ['-xzf', archive, '-C', outDir, '--no-same-owner', '--no-same-permissions', '--', `${crate.name}-${crate.version}`], { stdio: ['ignore', 'inherit', 'inherit'] });
    rmSync(archive);
    const crateDir = join(outDir, `${crate.name}-${crate.version}`);
    if (untar.status !== 0 || !existsSync(join(crateDir, 'Cargo.toml'))) fail(`${crate.name} ${crate.version}: the .crate does not unpack to ${crate.name}-${crate.version}/Cargo.toml`);
    writeFileSync(join(crateDir, '.cargo-checksum.json'), JSON.stringify({ files: {}, package: crate.checksum }));
    process.stdout.write(`fetched ${crate.name} ${crate.version} (${data.length} bytes)\n`);
  }
} catch (error) {
  fail(error instanceof Error ? error.message : String(error));
}
