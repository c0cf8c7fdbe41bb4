/**
 * Embedded mode runs the example backend services in this process, on the
 * same in-process bus the gateway uses: the same SDK path as in a cluster.
 */

import { createChatService } from '@switchboard/service-chat';
import { createJobsService } from '@switchboard/service-jobs';
import { createStoreService } from '@switchboard/service-store';
import type { Bus, Service } from '@switchboard/sdk';

export const EMBEDDED_SERVICES = {
  chat: createChatService,
  store: createStoreService,
  jobs: createJobsService,
} satisfies Record<string, (bus: Bus, options: { prefix: string }) => Service>;

export type EmbeddedService = keyof typeof EMBEDDED_SERVICES;

export async function startEmbeddedServices(
  names: readonly EmbeddedService[],
  bus: Bus,
  prefix: string,
): Promise<{ stop(): Promise<void> }> {
  const services = names.map((name) => EMBEDDED_SERVICES[name](bus, { prefix }));
  for (const service of services) await service.start();
  return {
    stop: async () => {
      for (const service of services) await service.stop();
    },
  };
}
