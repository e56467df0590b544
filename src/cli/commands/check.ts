import path from 'node:path';
import { Command } from 'commander';
import { loadConfig } from '../../config.ts';
import { checkConsistency } from '../../operations/consistency.ts';
import { openDatabase } from '../../store/metadata/database.ts';
import { createObjectStore } from '../../store/objects/index.ts';

/** An operator command: it reads the storage directly, like `kiln serve`. */
export function checkCommand(): Command {
  return new Command('check')
    .description('Operator: compare stored objects with the metadata and report orphaned or missing objects')
    .option('-d, --data-dir <dir>', 'data directory of the embedded defaults (env KILN_DATA_DIR; default ./.kiln)')
    .option('--fix', 'delete orphaned objects (after a grace period, so in-flight uploads are left alone)')
    .option('--json', 'print the report as JSON')
    .addHelpText('after', '\nUses the same DATABASE_URL / S3_* settings as kiln serve.\n\nExamples:\n  kiln check\n  DATABASE_URL=postgres://… S3_BUCKET=kiln kiln check --fix')
    .action(async (flags: { dataDir?: string; fix?: boolean; json?: boolean }) => {
      const config = loadConfig({ dataDir: flags.dataDir });
      const database = await openDatabase({ url: config.databaseUrl, dataDir: path.join(config.dataDir, 'db') });
      try {
        const report = await checkConsistency(database, createObjectStore(config.objects), { fix: flags.fix });
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        } else {
          process.stdout.write(`scanned ${report.scanned} objects: ${report.orphans.length} orphaned, ${report.missing.length} missing, ${report.deleted.length} deleted\n`);
          for (const key of report.orphans) process.stdout.write(`  orphan   ${key}\n`);
          for (const key of report.missing) process.stdout.write(`  MISSING  ${key}\n`);
        }
        if (report.missing.length > 0) process.exitCode = 2;
      } finally {
        await database.close();
      }
    });
}
