/**
 * Prints the settings table of docs/configuration.md from the settings'
 * declarations; with --write, replaces it in the document.
 *   node --import tsx scripts/config-table.ts [--write]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { SETTINGS } from '../src/config.ts';
import { renderSettingsTable, tableInDocument } from '../src/config/docs-table.ts';

const DOCUMENT = new URL('../docs/configuration.md', import.meta.url);
const table = renderSettingsTable(SETTINGS);
if (process.argv.includes('--write')) {
  const document = readFileSync(DOCUMENT, 'utf8');
  const current = tableInDocument(document);
  if (current === undefined) throw new Error('docs/configuration.md has no settings table markers');
  writeFileSync(DOCUMENT, document.replace(current, table));
} else {
  process.stdout.write(`${table}\n`);
}
