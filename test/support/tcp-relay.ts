import net from 'node:net';

export interface TcpRelay {
  /** The port on 127.0.0.1 that clients connect to instead of the target's. */
  readonly port: number;
  /** Drops every open connection and refuses new ones until `restore`. */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export interface RelayOptions {
  /**
   * Looks at every chunk a client sends; when it answers true the chunk is not
   * forwarded and that one connection is dropped, as if the server had died
   * exactly then.
   */
  dropConnectionWhen?: (chunk: Buffer) => boolean;
}

/** A TCP relay in front of a real server, so a test can take the network away at a chosen moment. */
export async function startTcpRelay(target: { host: string; port: number }, options: RelayOptions = {}): Promise<TcpRelay> {
  let open = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (!open) return client.destroy();
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('data', (chunk: Buffer) => {
      if (options.dropConnectionWhen?.(chunk)) drop();
      else upstream.write(chunk);
    });
    upstream.pipe(client);
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      open = false;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    restore() {
      open = true;
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
