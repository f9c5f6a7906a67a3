import { connect, createServer, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  port: number;
  /** Cuts every open connection and refuses new ones, as a dead server or a network partition would. */
  block(): void;
  unblock(): void;
  close(): Promise<void>;
}

/**
 * A TCP forwarder to 127.0.0.1:<targetPort> that a test can cut: lets a test take the
 * shared PostgreSQL (or Redis) "down" for one client without touching the real server,
 * which other engineers' tests are using.
 */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let blocked = false;
  const open = new Set<Socket>();
  const track = (s: Socket) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => s.destroy());
  };
  const server: Server = createServer((client) => {
    track(client);
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('tcp proxy has no address');
  return {
    port: address.port,
    block() {
      blocked = true;
      for (const s of open) s.destroy();
    },
    unblock() {
      blocked = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
