/**
 * The jobs service as its own process (cluster mode): answers the gateways'
 * requests for the `jobs` namespace over NATS, as one replica of a queue
 * group. A job runs on the replica that started it; stopping the process
 * cancels its running jobs (their last progress says so). Settings: see
 * runService in the SDK.
 */

import { runService } from '@switchboard/sdk';
import { createJobsService } from './index.js';

await runService('jobs', ({ bus, prefix, registry }) => createJobsService(bus, { prefix, registry }));
