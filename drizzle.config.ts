import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './src/store/metadata/schema.ts',
  out: './drizzle',
});
