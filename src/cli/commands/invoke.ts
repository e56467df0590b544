import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { isUuid, type ApiClient, type ComponentResult, type FilterResult, type FunctionResult, type InvokeBody, type InvokeResult, type Version } from '../api-client.ts';
import { apiCommand, contextFor, parsePositiveInteger, type CommonFlags } from '../context.ts';
import { formatBytes, formatDuration, type Output } from '../output.ts';
import { readStdin } from '../prompt.ts';
import { VERSION_REF_HELP } from './versions.ts';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'critical'] as const;

interface InvokeFlags extends CommonFlags {
  request?: string;
  input?: string;
  inputFile?: string;
  arg?: string[];
  env?: string[];
  method?: string;
  path?: string;
  header?: string[];
  body?: string;
  bodyFile?: string;
  responseStatus?: number;
  responseHeader?: string[];
  responseBody?: string;
  upstream?: string;
  logLevel?: (typeof LOG_LEVELS)[number];
  ticks?: number;
  timeout?: number;
  memory?: number;
  variant?: 'optimized' | 'original';
}

// No default ([]): commander would print "(default: [])" in the help of every repeatable flag.
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

const NOTES = `A function (wasi-command) gets --input on stdin, --arg and --env; its stdout and
stderr are printed as they are, and kiln exits with its exit code.
A filter (proxy-wasm) gets one request (-X, --path, -H, -d) in a fresh VM; the
upstream answers (the built-in echo, or preview.upstream of the version's config),
or --response-* simulates its answer. Kiln prints the request as the filter
forwarded it, the response, what the filter changed, and its log.
An http-component gets the request (-X, --path, -H, -d) and answers it itself;
Kiln prints its response and log.
Exit status: the function's exit code; for a filter or component, 0 when it ran to the end.`;

export function invokeCommand(): Command {
  return apiCommand(
    'invoke',
    "Run a version's latest successful build once on the test bed, with your input",
    [
      `kiln invoke my-function@1.0.0 --input '{"name":"Ada"}'`,
      'echo hello | kiln invoke my-function@1.0.0 --input-file - --arg --verbose --env LANG=C',
      'kiln invoke my-filter@1.0.0 --path /hello -H "accept: text/plain"',
      'kiln invoke my-filter@1.0.0 -X POST -d "ping" --response-status 503 --response-body "down"',
      'kiln invoke my-filter@1.0.0 --json | jq .response.changes',
    ],
    NOTES,
  )
    .argument('<version>', `${VERSION_REF_HELP}; or just the application: its newest version with a succeeded build`)
    .option('--request <file>', 'start from a JSON request body of POST /v1/versions/:id/invoke (flags override it)')
    .option('--input <text>', 'function: stdin')
    .option('--input-file <file>', 'function: stdin from a file ("-": this command\'s stdin)')
    .option('--arg <value>', 'function: an argument (repeatable)', collect)
    .option('--env <KEY=VALUE>', 'function: an environment variable (repeatable)', collect)
    .option('-X, --method <method>', 'filter: request method (default GET)')
    .option('--path <path>', 'filter: request path and query (default /)')
    .option('-H, --header <"name: value">', 'filter: a request header (repeatable)', collect)
    .option('-d, --body <text>', 'filter: request body')
    .option('--body-file <file>', 'filter: request body from a file ("-": stdin)')
    .option('--response-status <code>', "filter: simulate the upstream's answer with this status", parseStatus)
    .option('--response-header <"name: value">', 'filter: a header of the simulated answer (repeatable)', collect)
    .option('--response-body <text>', 'filter: the body of the simulated answer')
    .option('--upstream <name>', 'filter: the test bed upstream to ask (default: preview.upstream, else the echo)')
    .addOption(new Option('--log-level <level>', 'filter: lowest log level recorded').choices(LOG_LEVELS))
    .option('--ticks <n>', 'filter: proxy_on_tick calls before the request', parsePositiveInteger)
    .option('--timeout <ms>', 'guest time allowed', parsePositiveInteger)
    .option('--memory <mb>', 'memory cap in MiB', parsePositiveInteger)
    .addOption(new Option('--variant <variant>', 'run the optimized (default) or original binary').choices(['optimized', 'original']))
    .action(async (ref: string, flags: InvokeFlags) => {
      const body = await invokeBody(flags);
      const { client, output } = contextFor(flags);
      const version = await versionToRun(client, output, ref);
      const result = await client.invoke(version.id, body);
      if (output.json) output.printJson(result);
      else if (result.kind === 'wasi-command') printFunction(output, result);
      else if (result.kind === 'http-component') printComponent(output, result);
      else printFilter(output, result);
      process.exitCode = exitCodeOf(result);
    });
}

/** `app@1.2.3` or a version id as given; a bare application: its latest succeeded version, said aloud. */
async function versionToRun(client: ApiClient, output: Output, ref: string): Promise<Version> {
  if (ref.includes('@') || isUuid(ref)) return client.resolveVersion(ref);
  const { application, version } = await client.latestSucceededVersion(ref);
  output.note(`no version given: running ${application.name}@${version.version}, the newest version with a succeeded build`);
  return version;
}

function parseStatus(value: string): number {
  const status = Number(value);
  if (!Number.isInteger(status) || status < 100 || status > 599) throw new InvalidArgumentError('expected an HTTP status from 100 to 599');
  return status;
}

/** `--request` file first, then each flag on top of it. */
async function invokeBody(flags: InvokeFlags): Promise<InvokeBody> {
  const body: InvokeBody = flags.request ? await readRequestFile(flags.request) : {};
  const input = await bytesFrom(flags.input, flags.inputFile, '--input');
  if (input) body.input = input;
  if (flags.arg) body.args = flags.arg;
  if (flags.env) body.env = Object.fromEntries(flags.env.map(parseEnv));
  const request = { ...body.request };
  if (flags.method) request.method = flags.method;
  if (flags.path) request.path = flags.path;
  if (flags.header) request.headers = flags.header.map((header) => parseHeader(header, '--header'));
  const requestBody = await bytesFrom(flags.body, flags.bodyFile, '--body');
  if (requestBody) request.body = requestBody;
  if (Object.keys(request).length > 0) body.request = request;
  if (flags.responseStatus !== undefined || flags.responseHeader || flags.responseBody !== undefined) {
    body.response = {
      status: flags.responseStatus ?? 200,
      headers: (flags.responseHeader ?? []).map((header) => parseHeader(header, '--response-header')),
      ...(flags.responseBody !== undefined ? { body: { text: flags.responseBody } } : {}),
    };
  }
  if (flags.upstream) body.upstream = flags.upstream;
  if (flags.logLevel) body.logLevel = flags.logLevel;
  if (flags.ticks !== undefined) body.ticks = flags.ticks;
  if (flags.timeout !== undefined || flags.memory !== undefined) body.limits = { ...body.limits, timeoutMs: flags.timeout, memoryMb: flags.memory };
  if (flags.variant) body.variant = flags.variant;
  return body;
}

async function readRequestFile(file: string): Promise<InvokeBody> {
  const text = file === '-' ? (await readStdin()).toString('utf8') : await readFile(file, 'utf8');
  try {
    return JSON.parse(text) as InvokeBody;
  } catch {
    throw new Error(`--request ${file} is not valid JSON`);
  }
}

/** Text stays text; anything that is not UTF-8 travels as base64, so no byte is lost. */
async function bytesFrom(text: string | undefined, file: string | undefined, flag: string): Promise<{ text: string } | { base64: string } | undefined> {
  if (text !== undefined && file !== undefined) throw new Error(`pass ${flag} or ${flag}-file, not both`);
  if (text !== undefined) return { text };
  if (file === undefined) return undefined;
  const bytes = file === '-' ? await readStdin() : await readFile(file);
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch {
    return { base64: bytes.toString('base64') };
  }
}

function parseEnv(pair: string): [string, string] {
  const equals = pair.indexOf('=');
  if (equals <= 0) throw new Error(`--env ${JSON.stringify(pair)}: expected KEY=VALUE`);
  return [pair.slice(0, equals), pair.slice(equals + 1)];
}

function parseHeader(header: string, flag: string): [string, string] {
  const colon = header.indexOf(':', header.startsWith(':') ? 1 : 0);
  if (colon <= 0) throw new Error(`${flag} ${JSON.stringify(header)}: expected "name: value"`);
  return [header.slice(0, colon).trim().toLowerCase(), header.slice(colon + 1).trim()];
}

function exitCodeOf(result: InvokeResult): number {
  if (result.outcome !== 'ok') return 1;
  if (result.kind !== 'wasi-command') return 0;
  const code = result.exitCode ?? 1;
  return code >= 0 && code <= 255 ? code : 1;
}

const bodyBytes = (body: { text: string; base64?: string }): Buffer => (body.base64 !== undefined ? Buffer.from(body.base64, 'base64') : Buffer.from(body.text, 'utf8'));

/** The function's own output, byte for byte, then one line about the run (stderr). */
function printFunction(output: Output, result: FunctionResult): void {
  output.stdout.write(bodyBytes(result.stdout));
  output.stderr.write(bodyBytes(result.stderr));
  const truncated = result.stdout.truncated || result.stderr.truncated ? ' · output truncated' : '';
  const outcome = result.outcome === 'ok' ? output.err.green('ok') : output.err.red(result.outcome);
  output.note(output.err.dim(`── ${outcome} · exit ${result.exitCode ?? '-'} · ${formatDuration(result.durationMs)} · module ${formatBytes(result.module.size)}${truncated}`));
  failureDetails(output, result);
  unimplemented(output, result.unimplemented);
}

function printFilter(output: Output, result: FilterResult): void {
  const { out } = output;
  const outcome = result.outcome === 'ok' ? out.green('ok') : out.red(result.outcome);
  output.line(`${out.bold('outcome')}  ${outcome}${result.message ? `: ${result.message}` : ''}`);
  const request = result.request;
  output.line();
  output.line(out.bold(request.forwarded ? `Request forwarded to ${result.upstream?.name ?? 'the upstream'}:` : 'Request (not forwarded: the filter answered or stopped it):'));
  output.line(`  ${request.method} ${request.path}`);
  headerLines(output, request.headers, request.changes?.headers);
  bodyLine(output, request.body, request.changes?.body);
  if (result.localResponse) output.line(`  ${out.yellow('local response')} ${result.localResponse.status} from ${result.localResponse.sentFrom}${result.localResponse.details ? ` (${result.localResponse.details})` : ''}`);
  if (result.response) {
    output.line();
    output.line(out.bold(`Response (${result.response.source}):`));
    output.line(`  ${result.response.status}${result.response.changes?.status ? out.yellow(' (status changed by the filter)') : ''}`);
    headerLines(output, result.response.headers, result.response.changes?.headers);
    bodyLine(output, result.response.body, result.response.changes?.body);
  }
  if (result.logs.length > 0) {
    output.line();
    output.line(out.bold('Filter log:'));
    for (const entry of result.logs) output.line(`  ${out.dim(entry.level.padEnd(8))} ${entry.message}`);
  }
  for (const call of result.httpCalls) output.line(`  http call → ${call.upstream} ${call.method} ${call.path}: ${call.status ?? call.error ?? '-'} (${formatDuration(call.durationMs)})`);
  for (const note of result.notes) output.line(`  ${out.yellow('note')} ${note}`);
  output.line();
  output.line(out.dim(`guest ${formatDuration(result.timings.guestMs)} · total ${formatDuration(result.timings.totalMs)}${result.timings.vmStarted ? ' (VM started)' : ''} · module ${formatBytes(result.module.size)}`));
  failureDetails(output, result);
  unimplemented(output, result.unimplemented);
}

/** The component's response and log; there is no upstream. */
function printComponent(output: Output, result: ComponentResult): void {
  const { out } = output;
  const outcome = result.outcome === 'ok' ? out.green('ok') : out.red(result.outcome);
  output.line(`${out.bold('outcome')}  ${outcome}${result.message ? `: ${result.message}` : ''}`);
  if (result.response) {
    output.line();
    output.line(out.bold('Response:'));
    output.line(`  ${result.response.status}`);
    headerLines(output, result.response.headers, undefined);
    bodyLine(output, result.response.body, false);
  }
  if (result.logs.length > 0) {
    output.line();
    output.line(out.bold('Component log:'));
    for (const entry of result.logs) output.line(`  ${out.dim(entry.stream.padEnd(7))} ${entry.line}`);
  }
  for (const call of result.outgoing) output.line(`  outgoing → ${call.authority}${call.pathWithQuery}: ${call.allowed ? (call.status ?? 'allowed') : out.red('refused (not an allowed upstream)')}`);
  output.line();
  output.line(out.dim(`handle ${formatDuration(result.timings.handleMs)} · instance ${formatDuration(result.timings.instantiateMs)}${result.timings.prewarmed ? ' (pre-warmed)' : ''} · total ${formatDuration(result.timings.totalMs)} · component ${formatBytes(result.module.size)}`));
  if (result.outcome !== 'ok' && result.message) output.note(`${output.err.red(result.outcome)}: ${result.message}`);
}

type Pairs = Array<[string, string]>;

/** Headers, with what the filter added marked `+` and what it removed listed as `-`. */
function headerLines(output: Output, headers: Pairs, changes: { added: Pairs; removed: Pairs } | undefined): void {
  const added = new Set((changes?.added ?? []).map(([key, value]) => `${key}\u0000${value}`));
  for (const [key, value] of headers) {
    const mark = added.has(`${key}\u0000${value}`) ? output.out.green('+ ') : '  ';
    output.line(`  ${mark}${key}: ${value}`);
  }
  for (const [key, value] of changes?.removed ?? []) output.line(`  ${output.out.red(`- ${key}: ${value}`)}`);
}

function bodyLine(output: Output, body: { text: string; size: number; base64?: string }, changed: boolean | undefined): void {
  if (body.size === 0) return;
  const note = changed ? output.out.yellow(' (changed by the filter)') : '';
  const shown = body.base64 !== undefined ? `(${formatBytes(body.size)} of binary data)` : body.text.length > 2000 ? `${body.text.slice(0, 2000)}… (${formatBytes(body.size)})` : body.text;
  output.line(`  body${note}: ${shown}`);
}

function failureDetails(output: Output, result: FunctionResult | FilterResult): void {
  if (result.outcome === 'ok') return;
  if (result.message) output.note(`${output.err.red(result.outcome)}: ${result.message}`);
  for (const frame of result.stack ?? []) output.note(`    at ${frame}`);
}

function unimplemented(output: Output, names: string[]): void {
  if (names.length > 0) output.note(output.err.dim(`unimplemented host calls (answered with a stub): ${names.join(', ')}`));
}
