/**
 * For testing a service without a gateway: call it exactly as a gateway does,
 * and stand in for the server API to record what it publishes.
 */

import {
  type ServiceOperation,
  type ServiceReply,
  type ServiceRequest,
  Subjects,
} from '@switchboard/protocol';
import type { Bus } from './bus.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Sends a request to the namespace's service; `client` and `user` default to `c1` and `42`. */
export async function callService<T = unknown>(
  bus: Bus,
  namespace: string,
  operation: ServiceOperation,
  req: Partial<ServiceRequest>,
  options: { prefix?: string; timeoutMs?: number } = {},
): Promise<ServiceReply<T>> {
  const body: ServiceRequest = { client: 'c1', user: '42', ...req };
  const subject = new Subjects(options.prefix ?? 'sb').service(namespace, operation);
  const raw = await bus.request(subject, encoder.encode(JSON.stringify(body)), options.timeoutMs ?? 2000);
  return JSON.parse(decoder.decode(raw)) as ServiceReply<T>;
}

/** Answers the `publish` of a namespace's service on the bus (`{result: {}}`) and records every call. */
export function recordPublications<T = unknown>(
  bus: Bus,
  namespace: string,
  prefix = 'sb',
): { channel: string; data: T }[] {
  const subjects = new Subjects(prefix);
  const published: { channel: string; data: T }[] = [];
  bus.serve(subjects.serviceApi(namespace, 'publish'), subjects.serviceApiQueue, async (data) => {
    published.push(JSON.parse(decoder.decode(data)) as { channel: string; data: T });
    return encoder.encode(JSON.stringify({ result: {} }));
  });
  return published;
}
