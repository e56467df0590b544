/** Compiler diagnostics: `file:line:col: error: …` (clang, gcc), `error[E0308]: …` (rustc), `ERROR TS2322:` (AssemblyScript), and Kiln's own failure lines. */
const ERROR_LINE = /(^|[\s:])(fatal error|error)(\[E\d+\])?:|^ERROR\b|\bERROR TS\d+|^kiln: .*\bfailed\b/i;
export const isErrorLine = (line: string): boolean => ERROR_LINE.test(line);
