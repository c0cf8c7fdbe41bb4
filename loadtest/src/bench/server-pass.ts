#!/usr/bin/env node
/**
 * One server's passes A and B of `make bench` (main.ts forks it once per
 * server, the job as its argument) in a load generator of its own: every
 * server meets a fresh generator, not one whose heap the passes before it
 * (latency, the hot channel, the servers before) left behind. Measured here:
 * right after the hot pass, the shared generator opened Switchboard's ramp
 * 20 % slower than a fresh one, and a trickle of connects costs a server
 * more CPU each than a stream of them (more wake-ups for the same work), so
 * whichever server came first paid for the generator's history. Sends the
 * result over the IPC channel and exits.
 */

import { fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { passA, passB, type Plan, type ServerResult } from './measure.js';
import { pin } from './proc.js';
import type { ServerKind } from './servers.js';

export interface ServerPassJob {
  kind: ServerKind;
  plan: Plan;
  secret: string;
  serverCore: number;
  loadCore: number;
  /** The environment of each pass's server (a CPU profile), by pass. */
  env: { a: Record<string, string>; b: Record<string, string> };
}

type Outcome = { result: ServerResult } | { error: string };

const SELF = fileURLToPath(import.meta.url);

/** Runs `job` in a forked generator; its lines go to this process's output. */
export async function serverPass(job: ServerPassJob, log: (line: string) => void): Promise<ServerResult> {
  // Advanced serialization: a NaN (a median of no samples) stays NaN.
  const child = fork(SELF, [JSON.stringify(job)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  let outcome: Outcome | undefined;
  child.on('message', (message: Outcome | { log: string }) => {
    if ('log' in message) log(message.log);
    else outcome = message;
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  if (outcome === undefined)
    throw new Error(`${job.kind}: the server pass exited (${code}) without a result`);
  if ('error' in outcome) throw new Error(`${job.kind}: ${outcome.error}`);
  return outcome.result;
}

async function run(job: ServerPassJob): Promise<ServerResult> {
  pin(process.pid, job.loadCore);
  const say = (log: string) => process.send!({ log });
  const { kind, plan, secret, serverCore, env } = job;
  say(`${kind}: memory, 1×N fan-out, connect rate (${plan.levels.join(', ')} connections)`);
  const a = await passA(kind, plan, secret, serverCore, env.a);
  say(`${kind}: N×1 fan-out (${plan.channelLevels.join(', ')} channels)`);
  const b = await passB(kind, plan, secret, serverCore, env.b);
  return { ...a, channels: b.runs, errors: { ...a.errors, ...b.errors } };
}

if (process.argv[1] === SELF && process.send) {
  const job = JSON.parse(process.argv[2]!) as ServerPassJob;
  run(job).then(
    (result) => process.send!({ result } satisfies Outcome, () => process.exit(0)),
    (err: unknown) =>
      process.send!({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) }, () =>
        process.exit(1),
      ),
  );
}
