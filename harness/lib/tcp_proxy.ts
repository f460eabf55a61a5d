/**
 * A TCP proxy in front of the broker or the database that a scenario controls: `cut()` drops every
 * connection and refuses new ones, as a network partition would, while the real server keeps
 * running for others.
 * @module
 */

/** A running proxy. */
export interface TcpProxy {
  /** The port it listens on, on 127.0.0.1. */
  port: number;
  /** Closes every proxied connection and refuses new ones until `restore()`. */
  cut(): void;
  /** Connections refused so far while cut: how often a client tried. */
  readonly refused: number;
  restore(): void;
  close(): void;
}

/** Starts a proxy on a free port that forwards to `target`. */
export function startTcpProxy(target: { hostname: string; port: number }): TcpProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let isCut = false;
  let refused = 0;

  function closeQuietly(conn: Deno.Conn): void {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed by the other side.
    }
  }

  async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    await from.readable.pipeTo(to.writable, { preventClose: true }).catch(() => {});
    closeQuietly(from);
    closeQuietly(to);
  }

  (async () => {
    for await (const client of listener) {
      if (isCut) {
        refused++;
        closeQuietly(client);
        continue;
      }
      Deno.connect(target).then((upstream) => {
        // A cut that came while this connection was being made ends it too.
        if (isCut) {
          closeQuietly(client);
          closeQuietly(upstream);
          return;
        }
        open.add(client).add(upstream);
        pipe(client, upstream);
        pipe(upstream, client);
      }, () => closeQuietly(client));
    }
  })().catch(() => {});

  return {
    port: (listener.addr as Deno.NetAddr).port,
    get refused() {
      return refused;
    },
    cut() {
      isCut = true;
      for (const conn of [...open]) closeQuietly(conn);
    },
    restore() {
      isCut = false;
    },
    close() {
      isCut = true;
      for (const conn of [...open]) closeQuietly(conn);
      listener.close();
    },
  };
}

/** `url` (an `amqp://` or `postgres://` URL) with its host and port changed to those of `proxy`. */
export function viaProxy(url: string, proxy: TcpProxy): string {
  const proxied = new URL(url);
  proxied.hostname = "127.0.0.1";
  proxied.port = String(proxy.port);
  return proxied.toString();
}
