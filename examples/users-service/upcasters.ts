import type { UserRenamedV1, UserRenamedV2 } from './types';

/** UserRenamed v1 -> v2: `name` is split at the first run of whitespace into first and last name. */
export function upcastUserRenamedV1(payload: Record<string, unknown>): Record<string, unknown> {
  const v1 = payload as unknown as UserRenamedV1;
  const name = typeof v1.name === 'string' ? v1.name.trim() : '';
  const m = /^(\S*)\s*([\s\S]*)$/.exec(name);
  const v2: UserRenamedV2 = { first_name: m?.[1] ?? '', last_name: m?.[2] ?? '' };
  return { ...v2 };
}
