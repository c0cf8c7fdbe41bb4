/** Server API over gRPC (to be completed). */

import type { Node } from '../node.js';

export async function startGrpcServer(
  _node: Node,
  _host: string,
  _port: number,
): Promise<{ close(): Promise<void> }> {
  return { close: async () => {} };
}
