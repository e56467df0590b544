/**
 * `kiln testbed`, assembled: a test bed runner on its own machine that
 * connects to the API (with a worker token), serves calls until the
 * connection drops, and reconnects. Its settings (limits, upstreams, slots'
 * heap…) come from the API over the wire at every connection, so the runner
 * and the API can never disagree about a limit.
 */
import type { Logger } from 'pino';
import { connectToApi, RunnerRefusedError } from '../testbed/runner/remote.ts';
import { serveRunner } from '../testbed/runner/runner.ts';
import { Peer } from '../testbed/runner/wire.ts';

/** Between reconnection attempts: the API may be restarting. */
const RECONNECT_DELAYS_MS = [500, 1_000, 2_000, 5_000];

export interface RemoteRunnerOptions {
  apiUrl: string;
  token: string;
  slots: number;
  name: string;
  logger: Logger;
}

export interface RunningRemoteRunner {
  /** Settles when the runner gave up: the API refused its token or the route (no point in retrying). */
  done: Promise<void>;
  stop(): Promise<void>;
}

export function startRemoteRunner(options: RemoteRunnerOptions): RunningRemoteRunner {
  const { logger } = options;
  let stopping = false;
  let current: Awaited<ReturnType<typeof serveRunner>> | undefined;
  const loop = async () => {
    for (let attempt = 0; !stopping; attempt++) {
      try {
        const peer = new Peer(await connectToApi(options.apiUrl, options.token));
        current = await serveRunner(peer, { slots: options.slots, name: options.name });
        logger.info({ api: options.apiUrl, slots: options.slots }, 'test bed runner connected');
        attempt = 0;
        const reason = await current.closed;
        if (!stopping) logger.warn({ reason }, 'connection to the API lost; reconnecting');
      } catch (error) {
        if (error instanceof RunnerRefusedError && (error.status === 401 || error.status === 403 || error.status === 404)) throw error;
        logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'could not connect to the API; retrying');
      }
      if (!stopping) await new Promise((resolve) => setTimeout(resolve, RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)]));
    }
  };
  return {
    done: loop(),
    async stop() {
      stopping = true;
      await current?.close();
    },
  };
}
