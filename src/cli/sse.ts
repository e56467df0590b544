/**
 * Server-sent events read from a fetch body: Node 20 has no EventSource, and
 * the log stream needs an Authorization header, which EventSource could not
 * send anyway.
 */

export interface SseEvent {
  event: string;
  data: string;
}

/**
 * Calls `onEvent` for each event until the stream ends or `onEvent` returns
 * false (then the stream is cancelled). Follows the WHATWG parsing rules for
 * the fields Kiln uses: `event`, multi-line `data`, `:` comments.
 */
export async function readSse(body: ReadableStream<Uint8Array>, onEvent: (event: SseEvent) => boolean | void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  try {
    while (true) {
      const { done, value } = await reader.read();
      const events = parser.push(done ? decoder.decode() : decoder.decode(value, { stream: true }));
      for (const event of events) {
        if (onEvent(event) === false) return;
      }
      if (done) return;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

export class SseParser {
  private buffer = '';
  private eventName = '';
  private data: string[] = [];

  /** Feeds text; returns the events completed by it. */
  push(text: string): SseEvent[] {
    this.buffer += text;
    const events: SseEvent[] = [];
    let newline: RegExpExecArray | null;
    const lineEnd = /\r\n|\r|\n/g;
    let consumed = 0;
    while ((newline = lineEnd.exec(this.buffer)) !== null) {
      // A lone \r at the very end may be the first half of \r\n: wait for more.
      if (newline[0] === '\r' && newline.index === this.buffer.length - 1) break;
      const event = this.line(this.buffer.slice(consumed, newline.index));
      if (event) events.push(event);
      consumed = newline.index + newline[0].length;
    }
    this.buffer = this.buffer.slice(consumed);
    return events;
  }

  private line(line: string): SseEvent | undefined {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.eventName = value;
    else if (field === 'data') this.data.push(value);
    return undefined;
  }

  private dispatch(): SseEvent | undefined {
    const hasData = this.data.length > 0;
    const event = { event: this.eventName || 'message', data: this.data.join('\n') };
    this.eventName = '';
    this.data = [];
    return hasData ? event : undefined;
  }
}
