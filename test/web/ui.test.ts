/**
 * The web UI end to end: Debian's Chromium (playwright-core) against a real
 * Kiln API serving the bundle that scripts/build-ui.sh builds, with real
 * sandboxed C builds by a real worker. Every step asserts that the page
 * logged no console error and threw nothing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import type { RunningWorker } from '../../src/worker/worker.ts';
import { UI_CSP } from '../../src/api/routes/ui.ts';
import { tarGz } from '../support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';
import { EXAMPLES, startTestWorkers } from '../support/workers.ts';
import { chromiumMissing, launchBrowser, type Browser, type WatchedPage } from './browser.ts';

const BUILD_TIMEOUT_MS = 4 * 60_000;
const ROOT = new URL('../../', import.meta.url).pathname;

// The suite serves what the project's own set-up step builds.
const built = spawnSync('bash', ['scripts/build-ui.sh'], { cwd: ROOT, encoding: 'utf8' });
if (built.status !== 0) throw new Error(`scripts/build-ui.sh failed:\n${built.stderr}`);

describe('web UI in Chromium', { skip: chromiumMissing() }, () => {
  let t: TestKiln;
  let browser: Browser;
  let worker: RunningWorker | undefined;
  let scratch: string;
  let watched: WatchedPage;
  let page: Page;
  const appName = `web-${randomUUID().slice(0, 6)}`;

  before(async () => {
    t = await startTestKiln();
    browser = await launchBrowser();
    scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-web-test-'));
    watched = await browser.page();
    page = watched.page;
  });
  after(async () => {
    await worker?.stop();
    await browser?.close();
    await t?.close();
    await rm(scratch, { recursive: true, force: true });
  });

  /** The page so far logged no console error and threw nothing. */
  const assertNoConsoleErrors = () => assert.deepEqual(watched.errors, [], 'console errors or uncaught exceptions in the page');
  const ensureWorker = () => (worker ??= startTestWorkers(t));

  async function waitForState(state: string): Promise<void> {
    await page.getByRole('heading', { level: 1, name: new RegExp(`Build #\\d+ ${state}`) }).waitFor({ timeout: BUILD_TIMEOUT_MS });
  }

  async function openApp(name: string): Promise<void> {
    await page.getByRole('link', { name: 'Applications', exact: true }).click();
    await page.getByRole('link', { name, exact: true }).click();
    await page.getByRole('heading', { level: 1, name }).waitFor();
  }

  async function uploadArchive(version: string, archivePath: string): Promise<void> {
    await page.getByLabel('Archive').setInputFiles(archivePath);
    await page.getByRole('textbox', { name: 'Version' }).fill(version);
    await page.getByRole('button', { name: 'Upload and build' }).click();
    await page.getByRole('heading', { level: 1, name: /Build #\d+/ }).waitFor();
  }

  it('refuses a wrong token with a clear message and shows no data', async () => {
    await page.goto(t.url);
    await page.getByLabel('Token').fill('not-a-real-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.innerText(), /This token was not accepted: this token is unknown or revoked/);
    assert.equal(await page.getByRole('heading', { name: 'Applications' }).count(), 0);
    assert.equal(await page.evaluate(() => window.sessionStorage.length), 0, 'the wrong token is not kept');
    assert.ok(!page.url().includes('not-a-real-token'), 'the token is not in the URL');
    // Chromium itself reports every 4xx response on the console; the refused token is the one expected here.
    assert.deepEqual(
      watched.errors.filter((error) => !/Failed to load resource: the server responded with a status of 401/.test(error)),
      [],
    );
    watched.errors.length = 0;
  });

  it('signs in with the right token (keyboard only) and creates an application', async () => {
    await page.getByLabel('Token').fill(t.ownerToken);
    await page.getByLabel('Token').press('Enter');
    await page.getByRole('heading', { name: 'Applications' }).waitFor();
    assert.ok(!page.url().includes(t.ownerToken), 'the token is not in the URL');
    await page.getByLabel('New application name').fill(appName);
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('link', { name: appName, exact: true }).waitFor();
    assertNoConsoleErrors();
  });

  it('uploads a folder (packed in the browser), cancels the queued build, rebuilds, follows the live log to succeeded', { timeout: BUILD_TIMEOUT_MS }, async () => {
    await openApp(appName);
    // No worker yet: the build waits in the queue while the page follows it, so the stream is live for sure.
    await page.getByLabel('Project folder').setInputFiles(path.join(EXAMPLES, 'c-function'));
    await page.getByRole('status').filter({ hasText: 'Folder: c-function (1 files' }).waitFor();
    await page.getByRole('textbox', { name: 'Version' }).fill('1.0.0');
    await page.getByRole('button', { name: 'Upload and build' }).click();
    await page.getByRole('heading', { level: 2, name: 'Log (live)' }).waitFor();
    assert.match(await page.getByRole('heading', { level: 1 }).innerText(), /Build #1 queued/);
    // Cancel the queued build, then rebuild: the page follows the new build.
    await page.getByRole('button', { name: 'Cancel build' }).click();
    await waitForState('cancelled');
    await page.getByRole('button', { name: 'Rebuild' }).click();
    await page.getByRole('heading', { level: 1, name: /Build #2 queued/ }).waitFor();
    await page.getByRole('heading', { level: 2, name: 'Log (live)' }).waitFor();
    ensureWorker();
    await page.locator('.log').getByText(/clang --target=wasm32-wasi/).first().waitFor({ timeout: BUILD_TIMEOUT_MS });
    await waitForState('succeeded');
    await page.getByRole('heading', { level: 2, name: 'Log', exact: true }).waitFor();
    const facts = await page.locator('.facts').innerText();
    assert.match(facts, /Language\s+c/);
    assert.match(facts, /Size\s+[\d.]+ (B|KiB) original →/);
    assertNoConsoleErrors();
  });

  it('shows versions with state, sizes and a chart, then a failed build with its compiler error highlighted', { timeout: BUILD_TIMEOUT_MS }, async () => {
    const broken = path.join(scratch, 'broken.tar.gz');
    await writeFile(broken, await tarGz({ 'src/main.c': '#include <stdio.h>\nint main(void) {\n  puts("x")\n  return 0;\n}\n' }));
    await openApp(appName);
    const row = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: '1.0.0' }) });
    assert.match(await row.innerText(), /succeeded/);
    assert.match(await row.innerText(), /\bc\b/);
    await page.getByRole('img', { name: /^Size by version: 1\.0\.0:/ }).waitFor();
    await uploadArchive('1.0.1', broken);
    ensureWorker();
    await waitForState('failed');
    await page.getByRole('button', { name: 'Jump to first error' }).click();
    const focused = page.locator('#first-error');
    assert.ok(await focused.evaluate((element) => element === document.activeElement), 'the first error line has the focus');
    assert.match(await focused.innerText(), /main\.c:3:\d+: error: expected ';'/);
    assert.match(await focused.getAttribute('class') ?? '', /error-line/);
    assertNoConsoleErrors();
  });

  it('invokes the function from Try it (no version picked: the newest succeeded one)', async () => {
    await openApp(appName);
    await page.getByRole('link', { name: 'Try the latest succeeded version' }).click();
    assert.match(await page.getByRole('status').first().innerText(), new RegExp(`using ${appName}@1\\.0\\.0, the newest version with a succeeded build`));
    await page.getByLabel('Input (stdin)').fill('hello kiln\n');
    await page.getByRole('button', { name: 'Invoke' }).click();
    await page.getByTestId('stdout').waitFor();
    assert.match(await page.getByTestId('stdout').innerText(), /^HELLO KILN/);
    assert.match(await page.locator('.result').innerText(), /Outcome: ok[\s\S]*Exit code 0/);
    assertNoConsoleErrors();
  });

  it('builds a filter and invokes it with method, path, headers and body', { timeout: BUILD_TIMEOUT_MS }, async () => {
    const filterApp = `${appName}-filter`;
    await page.getByRole('link', { name: 'Applications', exact: true }).click();
    await page.getByLabel('New application name').fill(filterApp);
    await page.getByRole('button', { name: 'Create' }).click();
    await openApp(filterApp);
    await page.getByLabel('Project folder').setInputFiles(path.join(EXAMPLES, 'c-filter'));
    await page.getByRole('textbox', { name: 'Version' }).fill('1.0.0');
    await page.getByRole('button', { name: 'Upload and build' }).click();
    ensureWorker();
    await waitForState('succeeded');
    await page.getByRole('link', { name: 'Try it' }).click();
    await page.getByLabel('Method').selectOption('POST');
    await page.getByLabel('Path').fill('/hello');
    await page.getByLabel('Headers (name: value per line)').fill('accept: text/plain');
    await page.getByLabel('Body').fill('ping');
    await page.getByRole('button', { name: 'Invoke' }).click();
    await page.getByTestId('response-status').waitFor();
    assert.equal(await page.getByTestId('response-status').innerText(), '200');
    const result = await page.locator('.result').innerText();
    assert.match(result, /Request forwarded to echo/);
    assert.match(result, /POST \/hello/);
    assert.match(result, /x-kiln-c: hello/);
    assert.match(result, /Filter log/);
    assert.match(await page.getByRole('link', { name: /\/preview\/[0-9a-f-]{36}\/$/ }).innerText(), new RegExp(`^${t.url}/preview/`));
    assertNoConsoleErrors();
  });

  it('promotes two versions with confirmation and rolls back', { timeout: BUILD_TIMEOUT_MS }, async () => {
    const second = path.join(scratch, 'second.tar.gz');
    const source = await readFile(path.join(EXAMPLES, 'c-function/src/main.c'));
    await writeFile(second, await tarGz({ 'src/main.c': source }));
    await openApp(appName);
    await uploadArchive('1.1.0', second);
    await waitForState('succeeded');
    await openApp(appName);

    const promote = async (version: string, confirmLabel = 'Promote') => {
      await page.getByLabel('Version to promote').selectOption({ label: version });
      await page.getByLabel('Environment').selectOption('production');
      await page.getByRole('button', { name: 'Promote', exact: true }).click();
      const dialog = page.getByRole('dialog');
      await dialog.waitFor();
      assert.match(await dialog.innerText(), /production will run/);
      await dialog.getByRole('button', { name: confirmLabel }).click();
    };
    // Cancelling the confirmation changes nothing.
    await page.getByLabel('Version to promote').selectOption({ label: '1.0.0' });
    await page.getByRole('button', { name: 'Promote', exact: true }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    assert.equal(await page.getByTestId('active-production').innerText(), 'nothing');

    await promote('1.0.0');
    await page.getByRole('status').filter({ hasText: 'production now runs 1.0.0' }).waitFor();
    await promote('1.1.0');
    await page.getByRole('status').filter({ hasText: 'production now runs 1.1.0' }).waitFor();
    // The table reloads after the promotion's answer: wait for it to show the new state.
    await page.getByTestId('active-production').filter({ hasText: /^1\.1\.0$/ }).waitFor();

    await page.getByRole('button', { name: 'Roll back production to 1.0.0' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Roll back' }).click();
    await page.getByRole('status').filter({ hasText: 'production now runs 1.0.0' }).waitFor();
    await page.getByTestId('active-production').filter({ hasText: /^1\.0\.0$/ }).waitFor();
    const history = await call<{ active: Record<string, { version: string }> }>(t.url, 'GET', `/v1/applications/${await appId(appName)}/deployments`, { token: t.ownerToken });
    assert.equal(history.body.active.production?.version, '1.0.0', 'the API agrees with the page');
    await page.getByRole('link', { name: 'Applications', exact: true }).click();
    const row = page.getByRole('row').filter({ has: page.getByRole('link', { name: appName, exact: true }) });
    await row.getByText('production: 1.0.0').waitFor();
    assert.match(await row.innerText(), /1\.1\.0\s+succeeded/, 'the list shows the latest version and its build state');
    assertNoConsoleErrors();
  });

  it('deletes an application only after confirmation', async () => {
    const filterApp = `${appName}-filter`;
    await page.getByRole('link', { name: 'Applications', exact: true }).click();
    const link = page.getByRole('link', { name: filterApp, exact: true });
    await link.waitFor();
    await page.getByRole('button', { name: `Delete ${filterApp}` }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    assert.equal(await link.count(), 1, 'cancelled: still there');
    await page.getByRole('button', { name: `Delete ${filterApp}` }).click();
    // Keyboard: the dialog's confirm button is reachable and Enter submits it.
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: `Deleted ${filterApp}.` }).waitFor();
    // The list reloads after the deletion: the row goes once the API's answer is in.
    await link.waitFor({ state: 'detached' });
    assert.equal((await call(t.url, 'GET', '/v1/applications', { token: t.ownerToken })).raw.toString().includes(filterApp), false, 'gone from the API too');
    assertNoConsoleErrors();
  });

  it('signs out: the token is forgotten, a reload stays signed out', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Token').waitFor();
    assert.equal(await page.evaluate(() => window.sessionStorage.length), 0);
    await page.reload();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    assert.equal(await page.getByRole('heading', { name: 'Applications' }).count(), 0);
    assertNoConsoleErrors();
  });

  async function appId(name: string): Promise<string> {
    const list = await call<{ items: Array<{ id: string; name: string }> }>(t.url, 'GET', '/v1/applications', { token: t.ownerToken });
    const found = list.body.items.find((app) => app.name === name);
    assert.ok(found, `application ${name} exists`);
    return found.id;
  }
});

describe('web UI Content-Security-Policy', { skip: chromiumMissing() }, () => {
  let t: TestKiln;
  let browser: Browser;
  before(async () => {
    t = await startTestKiln();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  it('sends a strict policy on the page and its assets, and leaves /docs working', async () => {
    const index = await fetch(t.url);
    assert.equal(index.status, 200);
    assert.equal(index.headers.get('content-security-policy'), UI_CSP);
    assert.doesNotMatch(UI_CSP, /unsafe-inline|unsafe-eval|\*|https?:/);
    assert.match(UI_CSP, /script-src 'self'/);
    assert.equal(index.headers.get('x-content-type-options'), 'nosniff');
    const html = await index.text();
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son\w+=/i, 'no inline script or style in the page');
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    assert.ok(asset);
    const script = await fetch(new URL(asset, t.url));
    assert.equal(script.headers.get('content-security-policy'), UI_CSP);
    assert.match(script.headers.get('cache-control') ?? '', /immutable/);
    const docs = await fetch(new URL('/docs/', t.url));
    assert.equal(docs.status, 200, 'swagger UI still loads');
    assert.equal(docs.headers.get('content-security-policy'), null, "the UI's policy does not break /docs");
  });

  it('refuses an inline script injected into the page, and reports it', async () => {
    const { page, errors } = await browser.page();
    await page.goto(t.url);
    await page.getByLabel('Token').waitFor();
    const outcome = await page.evaluate(async () => {
      const violation = new Promise<string>((resolve) => document.addEventListener('securitypolicyviolation', (event) => resolve(event.violatedDirective), { once: true }));
      const script = document.createElement('script');
      script.textContent = 'window.injected = true;';
      document.body.append(script);
      const directive = await violation;
      return { directive, ran: (window as unknown as { injected?: boolean }).injected === true };
    });
    assert.equal(outcome.ran, false, 'the inline script did not run');
    assert.match(outcome.directive, /^script-src/);
    assert.ok(errors.some((error) => /Content Security Policy/.test(error)), 'Chromium reported the refusal');
  });

  it('answers unknown paths with the API 404, not the page', async () => {
    const missing = await call(t.url, 'GET', '/no-such-page');
    assert.equal(missing.status, 404);
    assert.match(JSON.stringify(missing.body), /route_not_found/);
  });
});

