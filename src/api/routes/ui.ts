/**
 * The web UI: the static bundle in web/dist (built by scripts/build-ui.sh at
 * set-up), served at `/` under a strict Content-Security-Policy. Files are
 * read once at start-up; the UI is a client of the public API only.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';

export const DEFAULT_UI_DIR = fileURLToPath(new URL('../../../web/dist/', import.meta.url));
/** The bundle is ours and small (~60 KB); anything past this is not a UI bundle and is not loaded into memory. */
export const MAX_UI_BYTES = 16 * 1024 * 1024;
export const MAX_UI_FILES = 200;

/**
 * Everything from Kiln itself, nothing inline, nothing from elsewhere: a
 * script injected into a page could neither run nor send the token anywhere.
 */
export const UI_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': UI_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

interface UiFile {
  body: Buffer;
  type: string;
  /** Vite names assets by content hash: they never change under a name. */
  immutable: boolean;
}

export async function loadUiFiles(dir: string): Promise<Map<string, UiFile> | undefined> {
  const files = new Map<string, UiFile>();
  let total = 0;
  const walk = async (relative: string): Promise<void> => {
    for (const entry of await readdir(path.join(dir, relative), { withFileTypes: true })) {
      const name = path.posix.join(relative, entry.name);
      if (entry.isDirectory()) await walk(name);
      else if (entry.isFile()) {
        const type = CONTENT_TYPES[path.extname(entry.name)];
        if (!type) continue;
        total += (await stat(path.join(dir, name))).size;
        if (total > MAX_UI_BYTES || files.size >= MAX_UI_FILES) throw new Error(`the UI bundle in ${dir} is larger than ${MAX_UI_FILES} files or ${MAX_UI_BYTES} bytes`);
        files.set(`/${name}`, { body: await readFile(path.join(dir, name)), type, immutable: name.startsWith('assets/') });
      }
    }
  };
  try {
    await walk('');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return files.has('/index.html') ? files : undefined;
}

const MISSING_BUNDLE = 'The Kiln web UI is not built on this server. Run `bash scripts/build-ui.sh` (npm start does it) and restart `kiln serve`. The API is at /docs.\n';

export function uiRoutes(dir: string = DEFAULT_UI_DIR): FastifyPluginAsync {
  return async (app) => {
    const files = await loadUiFiles(dir);
    const send = (reply: FastifyReply, file: UiFile) =>
      reply
        .headers(SECURITY_HEADERS)
        .header('content-type', file.type)
        .header('cache-control', file.immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
        .send(file.body);
    const index = files?.get('/index.html');
    app.get('/', { schema: { hide: true } }, async (_request, reply) => {
      if (!index) return reply.status(503).headers(SECURITY_HEADERS).type('text/plain; charset=utf-8').send(MISSING_BUNDLE);
      return send(reply, index);
    });
    for (const [route, file] of files ?? []) app.get(route, { schema: { hide: true } }, async (_request, reply) => send(reply, file));
  };
}
