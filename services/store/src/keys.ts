/**
 * Keys of the store: `Type`, `Type/id` or `Type/id/field`, each segment
 * `[A-Za-z0-9_-]+`. Values live under full (3-segment) keys; shorter keys
 * are prefixes for listing and subscribing.
 */

const KEY = /^[A-Za-z0-9_-]{1,64}(?:\/[A-Za-z0-9_-]{1,64}){0,2}$/;

export function isKey(value: unknown): value is string {
  return typeof value === 'string' && KEY.test(value);
}

/** A key with all three segments (one that holds a value). */
export function isFullKey(value: unknown): value is string {
  return isKey(value) && value.split('/').length === 3;
}

/** Whether `key` is `prefix` itself or lies under it. */
export function under(key: string, prefix: string): boolean {
  return key === prefix || key.startsWith(`${prefix}/`);
}

/** `Type/id/field`, `Type/id`, `Type`: the key and its parent levels. */
export function levels(key: string): string[] {
  const parts = key.split('/');
  return parts.map((_, i) => parts.slice(0, parts.length - i).join('/'));
}
