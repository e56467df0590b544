import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { Option, type Command } from 'commander';
import type { ArtifactDownload } from '../api-client.ts';
import { apiCommand, contextFor, type CommonFlags } from '../context.ts';
import { formatBytes } from '../output.ts';
import { VERSION_REF_HELP } from './versions.ts';

interface DownloadFlags extends CommonFlags {
  output?: string;
  variant?: 'optimized' | 'original';
}

export function downloadCommand(): Command {
  return apiCommand('download', "Download a version's Wasm binary (from its latest successful build), checking its sha256", [
    'kiln download hello@1.0.0                       # → hello-1.0.0.wasm',
    'kiln download 0b7e…-uuid -o filter.wasm --variant original',
    'kiln download hello@1.0.0 -o - | wasm-objdump -x -',
  ])
    .argument('<version>', VERSION_REF_HELP)
    .option('-o, --output <file>', 'where to write it ("-" for stdout; default <app>-<version>.wasm)')
    .addOption(new Option('--variant <variant>', 'optimized (default when there is one) or original').choices(['optimized', 'original']))
    .action(async (ref: string, flags: DownloadFlags) => {
      const { client, output } = contextFor(flags);
      const version = await client.resolveVersion(ref);
      const toStdout = flags.output === '-';
      if (toStdout && output.stdoutIsTty) throw new Error('refusing to write a binary to the terminal: pass -o <file>, or pipe the output');
      if (toStdout && output.json) throw new Error('--json and -o - both want stdout: pick one');
      const download = await client.downloadArtifact(version.id, flags.variant);
      const file = toStdout ? '-' : path.resolve(flags.output ?? (await defaultName(client, version.applicationId, version.version, flags.variant)));
      const { sha256, bytes } = toStdout ? await toStream(download, process.stdout) : await toFile(download, file);
      const result = { file, bytes, sha256, variant: download.variant, buildId: download.buildId, versionId: version.id };
      if (output.json) return output.printJson(result);
      if (!toStdout) output.line(`Saved ${path.relative(process.cwd(), file) || file}: ${formatBytes(bytes)}, ${download.variant ?? 'artifact'}, sha256 ${sha256} (verified)`);
    });
}

async function defaultName(client: ReturnType<typeof contextFor>['client'], applicationId: string, version: string, variant: string | undefined): Promise<string> {
  const app = await client.getApplication(applicationId);
  return `${app.name}-${version}${variant === 'original' ? '-original' : ''}.wasm`;
}

/** Hashes what passes through, so the digest is checked against what was written. */
function hasher() {
  const hash = createHash('sha256');
  let bytes = 0;
  const transform = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      bytes += chunk.length;
      callback(null, chunk);
    },
  });
  return { transform, result: () => ({ sha256: hash.digest('hex'), bytes }) };
}

function check(download: ArtifactDownload, result: { sha256: string; bytes: number }): void {
  if (download.sha256 && download.sha256 !== result.sha256) throw new Error(`the download is corrupt: sha256 ${result.sha256}, expected ${download.sha256}; nothing was kept, try again`);
  if (Number.isFinite(download.size) && download.size !== result.bytes) throw new Error(`the download is truncated: ${result.bytes} of ${download.size} bytes; nothing was kept, try again`);
}

/** Written beside the target, checked, then renamed: a bad download never replaces a good file. */
async function toFile(download: ArtifactDownload, file: string): Promise<{ sha256: string; bytes: number }> {
  if (!download.response.body) throw new Error('the server sent no body');
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.part`);
  const digest = hasher();
  try {
    await pipeline(Readable.fromWeb(download.response.body as NodeReadableStream<Uint8Array>), digest.transform, createWriteStream(temp, { mode: 0o644 }));
    const result = digest.result();
    check(download, result);
    await rename(temp, file);
    return result;
  } finally {
    await rm(temp, { force: true });
  }
}

/** To stdout the bytes flow before the check; a mismatch still fails the command. */
async function toStream(download: ArtifactDownload, stream: NodeJS.WritableStream): Promise<{ sha256: string; bytes: number }> {
  if (!download.response.body) throw new Error('the server sent no body');
  const digest = hasher();
  await pipeline(Readable.fromWeb(download.response.body as NodeReadableStream<Uint8Array>), digest.transform, stream, { end: false });
  const result = digest.result();
  check(download, result);
  return result;
}
