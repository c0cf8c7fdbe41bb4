/**
 * V8's `--trace-gc` lines (turned on by trace-gc.ts), read: the heap each
 * mark-compact left (the soak's leak check), and what scavenges of the young
 * generation freed (connect-ab's garbage per connect).
 */

/** What trace-gc.ts prints first: the process runs with the trace on. */
export const TRACE_GC_ON = 'trace-gc: on';

export interface MajorGc {
  /** Milliseconds since the gateway's isolate started. */
  ms: number;
  beforeBytes: number;
  afterBytes: number;
}

const MARK_COMPACT =
  /^\[\d+:0x[0-9a-f]+\]\s+(\d+) ms: Mark-Compact(?: \(reduce\))? ([\d.]+) \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB/;

const SCAVENGE = /^\[\d+:0x[0-9a-f]+\]\s+\d+ ms: Scavenge ([\d.]+) \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB/;

/** The mark-compacts in V8's --trace-gc lines of `text` (other lines ignored). */
export function majorGcs(text: string): MajorGc[] {
  const found: MajorGc[] = [];
  for (const line of text.split('\n')) {
    const m = MARK_COMPACT.exec(line);
    if (m)
      found.push({
        ms: Number(m[1]),
        beforeBytes: Number(m[2]) * 2 ** 20,
        afterBytes: Number(m[3]) * 2 ** 20,
      });
  }
  return found;
}

/**
 * The scavenges in `text` and the bytes they freed (heap used before minus
 * after: the garbage that died young, without what survived to be promoted).
 */
export function scavenges(text: string): { count: number; freedBytes: number } {
  let count = 0;
  let freedBytes = 0;
  for (const line of text.split('\n')) {
    const m = SCAVENGE.exec(line);
    if (!m) continue;
    count++;
    freedBytes += (Number(m[1]) - Number(m[2])) * 2 ** 20;
  }
  return { count, freedBytes };
}
