/**
 * The settings table of docs/configuration.md, rendered from the settings'
 * own declarations. The file holds it between two markers; the test
 * test/config-docs.test.ts fails when the two differ, and
 * `node --import tsx scripts/config-table.ts --write` rewrites it.
 */
import type { AnySetting } from './settings.ts';

export const TABLE_BEGIN = '<!-- settings table: generated from SETTINGS (src/config.ts) by scripts/config-table.ts; do not edit by hand -->';
export const TABLE_END = '<!-- end of settings table -->';

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function variableCell(setting: AnySetting): string {
  const aliases = setting.aliases ?? [];
  return `\`${setting.env}\`${aliases.length > 0 ? ` (also ${aliases.map((name) => `\`${name}\``).join(', ')})` : ''}`;
}

export function renderSettingsTable(settings: readonly AnySetting[]): string {
  const rows = settings.map((setting) => `| ${variableCell(setting)} | \`${setting.key}\` | ${cell(setting.type)} | ${cell(setting.defaultText)} | ${cell(setting.description)} |`);
  return [TABLE_BEGIN, '', '| Variable | File key | Type | Default | Meaning |', '|---|---|---|---|---|', ...rows, '', TABLE_END].join('\n');
}

/** The table as the document has it (markers included), or undefined when the markers are missing. */
export function tableInDocument(document: string): string | undefined {
  const begin = document.indexOf(TABLE_BEGIN);
  const end = document.indexOf(TABLE_END);
  if (begin < 0 || end < begin) return undefined;
  return document.slice(begin, end + TABLE_END.length);
}

/** The variables (first column) the document's table lists, in order. */
export function variablesInTable(table: string): string[] {
  return table
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => /^\| `([^`]+)`/.exec(line)?.[1] ?? '');
}
