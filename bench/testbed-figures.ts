/**
 * The test bed's figures for the report, one function per figure, so that
 * the test bed's own benchmark can change underneath (it is being moved into
 * runner processes): point each function at the new measurement and the
 * report stays as it is. A figure nobody measures yet is null, printed as
 * "not measured" — never a made-up number.
 */
import { measureTestbed, type TestbedRun } from './testbed.ts';

export interface TestbedFigures {
  /** p50 added by a warm request through the preview over the upstream alone (ms). */
  previewAddedMsP50: number | null;
  /** Its reference: p50 of the upstream alone, same client, same run (ms). */
  previewUpstreamMsP50: number | null;
  /** HTTP `invoke` of a small function per second. */
  invokePerSecond: number | null;
  /** First preview request after the build of a 1 MB module succeeded (ms). */
  firstRequestAfterUploadMs: number | null;
  /** Added by a fresh instance per request for a small filter (µs); null until the fresh-instance mode exists. */
  freshInstanceUs: number | null;
}

const previewAddedMsP50 = (run: TestbedRun): number => run.previewAddedMsP50;
const previewUpstreamMsP50 = (run: TestbedRun): number => run.upstreamMsP50;
const invokePerSecond = (run: TestbedRun): number => run.invokePerSecond;
const firstRequestAfterUploadMs = (run: TestbedRun): number => run.firstRequestAfterUploadMs;
/** Not measured yet: the test bed has no fresh-instance mode today. */
const freshInstanceUs = (_run: TestbedRun): number | null => null;

export async function measureTestbedFigures(warmRuns: number): Promise<TestbedFigures> {
  const run = await measureTestbed(warmRuns);
  return {
    previewAddedMsP50: previewAddedMsP50(run),
    previewUpstreamMsP50: previewUpstreamMsP50(run),
    invokePerSecond: invokePerSecond(run),
    firstRequestAfterUploadMs: firstRequestAfterUploadMs(run),
    freshInstanceUs: freshInstanceUs(run),
  };
}
