/** Parsing of what people type into the UI's forms: pure, so unit-tested in Node. */

/** Non-blank lines of a textarea. */
export const lines = (text: string): string[] => text.split('\n').filter((line) => line.trim() !== '');

/** `name: value` per line; a line without a colon is reported, not dropped. */
export function parseHeaderLines(text: string): Array<[string, string]> {
  return lines(text).map((line) => {
    const colon = line.indexOf(':', line.startsWith(':') ? 1 : 0);
    if (colon <= 0) throw new Error(`header line ${JSON.stringify(line)}: expected "name: value"`);
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
}

export function parseEnvLines(text: string): Record<string, string> {
  return Object.fromEntries(
    lines(text).map((line) => {
      const equals = line.indexOf('=');
      if (equals <= 0) throw new Error(`environment line ${JSON.stringify(line)}: expected KEY=VALUE`);
      return [line.slice(0, equals), line.slice(equals + 1)];
    }),
  );
}

/** 1.2.3 → 1.2.4: a suggestion for the next upload; the field stays editable. */
export function nextPatch(version: string | undefined): string {
  const match = version ? /^(\d+)\.(\d+)\.(\d+)/.exec(version) : null;
  return match ? `${match[1]}.${match[2]}.${Number(match[3]) + 1}` : '1.0.0';
}
