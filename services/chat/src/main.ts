/**
 * The chat service as its own process (cluster mode): answers the gateways'
 * requests for the `room` namespace over NATS, as one replica of a queue
 * group; run as many as you like. Settings: see runService in the SDK.
 */

import { runService } from '@switchboard/sdk';
import { createChatService } from './index.js';

await runService('chat', ({ bus, prefix, registry }) => createChatService(bus, { prefix, registry }));
