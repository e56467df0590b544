/**
 * docs/configuration.md lists every setting the loader reads, and nothing
 * else: the table is rendered from the same declarations (SETTINGS) the
 * loader uses, so a setting added, removed or changed in the code without
 * the document fails here.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CONFIG_FILE_VARIABLE, SETTINGS } from '../src/config.ts';
import { renderSettingsTable, tableInDocument, variablesInTable } from '../src/config/docs-table.ts';

const document = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
const REGENERATE = 'run `node --import tsx scripts/config-table.ts --write`';

describe('docs/configuration.md', () => {
  const table = tableInDocument(document);

  it('has the settings table', () => {
    assert.ok(table !== undefined, 'the table markers are missing');
  });

  it('lists every setting of the loader, and only those', () => {
    const documented = new Set(variablesInTable(table ?? ''));
    const declared = new Set(SETTINGS.map((setting) => setting.env));
    assert.deepEqual([...declared].filter((name) => !documented.has(name)), [], `settings missing from the table: ${REGENERATE}`);
    assert.deepEqual([...documented].filter((name) => !declared.has(name)), [], `rows of the table that are no setting: ${REGENERATE}`);
  });

  it('says for each what the code says (file key, type, default, meaning)', () => {
    assert.equal(table, renderSettingsTable(SETTINGS), `the table differs from the declarations: ${REGENERATE}`);
  });

  it('explains the config file and its variable, and README links here', () => {
    assert.match(document, new RegExp(CONFIG_FILE_VARIABLE));
    assert.match(readFileSync(new URL('../README.md', import.meta.url), 'utf8'), /docs\/configuration\.md/);
  });
});
