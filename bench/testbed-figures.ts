/**
 * The test bed's figures for the report, one function per figure, measured
 * on one Kiln whose runners are out of process (bench/testbed.ts). A figure
 * that could not be measured is null, printed as "not measured" — never a
 * made-up number.
 */
import { firstRequestAfterUpload, freshInstanceUs, invokePerSecond, previewAdded, startTestbedBench, victimP99Ratio } from './testbed.ts';

export interface TestbedFigures {
  /** p50 added by a warm request through the preview over the upstream alone (ms). */
  previewAddedMsP50: number | null;
  /** Its reference: p50 of the upstream alone, same client, same run (ms). */
  previewUpstreamMsP50: number | null;
  /** What a do-nothing node:http reverse proxy adds over the upstream alone, same run (ms): the floor of one hop. */
  previewBareProxyAddedMsP50: number | null;
  /** HTTP `invoke` of a small function per second. */
  invokePerSecond: number | null;
  /** First preview request after the build of a 1 MB module succeeded (ms). */
  firstRequestAfterUploadMs: number | null;
  /** Added by a fresh instance per request for a small filter over the warm VM (µs). */
  freshInstanceUs: number | null;
  /** A victim owner's p99 while another owner busy-loops, over its idle p99. */
  victimP99Ratio: number | null;
}

export async function measureTestbedFigures(warmRuns: number): Promise<TestbedFigures> {
  const bench = await startTestbedBench(warmRuns);
  try {
    const preview = await previewAdded(bench);
    return {
      previewAddedMsP50: preview.previewAddedMsP50,
      previewUpstreamMsP50: preview.upstreamMsP50,
      previewBareProxyAddedMsP50: preview.bareProxyAddedMsP50,
      invokePerSecond: await invokePerSecond(bench),
      firstRequestAfterUploadMs: await firstRequestAfterUpload(bench),
      freshInstanceUs: await freshInstanceUs(bench),
      victimP99Ratio: (await victimP99Ratio(bench)).ratio,
    };
  } finally {
    await bench.close();
  }
}
