/**
 * Channel patterns of the `channels` server API: `*` matches any run of
 * characters (none included), everything else matches itself. Matched in
 * time linear in the channel for each literal part (greedy, leftmost: with
 * only `*` as a wildcard that is exact), never by backtracking, so that no
 * pattern can stall the event loop.
 */

export interface ChannelPattern {
  /** The literal parts between the stars; one part means no star at all. */
  readonly parts: readonly string[];
}

export function compilePattern(pattern: string): ChannelPattern {
  return { parts: pattern.split('*') };
}

export function matchesPattern(compiled: ChannelPattern, channel: string): boolean {
  const { parts } = compiled;
  if (parts.length === 1) return channel === parts[0];
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (channel.length < first.length + last.length) return false;
  if (!channel.startsWith(first) || !channel.endsWith(last)) return false;
  let at = first.length;
  const end = channel.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i]!;
    if (part === '') continue;
    const found = channel.indexOf(part, at);
    if (found === -1 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}
