import { conflict } from '../errors.ts';
import { SqlOwnerRepository, type Owner } from '../store/metadata/repositories/owners.ts';
import { SqlTokenRepository } from '../store/metadata/repositories/tokens.ts';
import type { UseCaseContext } from './context.ts';

/** An owner and its first token, together or not at all; the secret is returned once and stored only hashed. */
export async function createOwner(context: Pick<UseCaseContext, 'database' | 'owners'>, name: string): Promise<{ owner: Owner; secret: string }> {
  if (await context.owners.getByName(name)) throw conflict('owner_exists', `an owner named ${name} already exists`);
  return context.database.db.transaction(async (tx) => {
    const owner = await new SqlOwnerRepository(tx).create(name);
    const token = await new SqlTokenRepository(tx).create({ kind: 'owner', ownerId: owner.id, name: 'first token' });
    return { owner, secret: token.secret };
  });
}
