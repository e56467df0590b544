/**
 * Waits for something a test cannot be told about directly (a socket
 * closing, a run starting), polling every 10 ms up to a generous deadline;
 * the caller's assertion after it says what was expected.
 */
export async function until(done: () => boolean, deadlineMs = 10_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
}
