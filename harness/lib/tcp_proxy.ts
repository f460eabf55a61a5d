/**
 * A TCP proxy in front of the broker or the database that a scenario controls: `cut()` drops every
 * connection and refuses new ones, as a refused or reset link would; `freeze()` keeps every
 * connection open and moves no byte, as a link that silently drops packets would; `delay()` holds
 * every byte for a while each way, as a long or jittery link would; the real server keeps running
 * for others.
 * @module
 */
import { sleep } from "./async.ts";

/** Latency a proxy adds to each direction of every connection, in milliseconds. */
export interface Latency {
  ms: number;
  /** Each chunk is held `ms` plus or minus up to this much, at random, never overtaking. @default {0} */
  jitterMs?: number;
}

/** A running proxy. */
export interface TcpProxy {
  /** The port it listens on, on 127.0.0.1. */
  port: number;
  /** Closes every proxied connection and refuses new ones until `restore()`. */
  cut(): void;
  /** Connections refused so far while cut: how often a client tried. */
  readonly refused: number;
  /** Client connections open through the proxy. */
  readonly connections: number;
  /** Moves no byte either way, and closes nothing, until `restore()`. */
  freeze(): void;
  /** Holds what goes through, each way, for `latency` from now on; `undefined` ends it. */
  delay(latency: Latency | undefined): void;
  /** Ends a cut or a freeze. */
  restore(): void;
  close(): void;
}

/** Starts a proxy on a free port that forwards to `target`. */
export function startTcpProxy(target: { hostname: string; port: number }): TcpProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let isCut = false;
  let refused = 0;
  let clients = 0;
  // While frozen: a promise that the thaw resolves, which every byte waits for.
  let frozen: PromiseWithResolvers<void> | undefined;
  let latency: Latency | undefined;

  function closeQuietly(conn: Deno.Conn): void {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed by the other side.
    }
  }

  async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const reader = from.readable.getReader();
    const writer = to.writable.getWriter();
    // Held chunks leave in the order they came, each at its time: reading goes on meanwhile, so the
    // latency does not also cut the throughput, as on a long link with a wide window.
    let written: Promise<void> = Promise.resolve();
    let lastDueMs = 0;
    try {
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        if (frozen) await frozen.promise;
        const bytes = chunk.value;
        if (!latency) {
          await written;
          await writer.write(bytes);
          continue;
        }
        const { ms, jitterMs = 0 } = latency;
        const dueMs = Math.max(
          lastDueMs,
          performance.now() + ms + (Math.random() * 2 - 1) * jitterMs,
        );
        lastDueMs = dueMs;
        written = written.then(async () => {
          await sleep(dueMs - performance.now());
          await writer.write(bytes);
        });
      }
    } catch {
      // Either side closed: both are closed below, once what was held has gone or failed.
    }
    await written.catch(() => {});
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
        clients++;
        Promise.all([pipe(client, upstream), pipe(upstream, client)]).then(() => clients--);
      }, () => closeQuietly(client));
    }
  })().catch(() => {});

  return {
    port: (listener.addr as Deno.NetAddr).port,
    get refused() {
      return refused;
    },
    get connections() {
      return clients;
    },
    freeze() {
      frozen ??= Promise.withResolvers();
    },
    cut() {
      isCut = true;
      for (const conn of [...open]) closeQuietly(conn);
    },
    delay(added) {
      latency = added;
    },
    restore() {
      isCut = false;
      frozen?.resolve();
      frozen = undefined;
    },
    close() {
      isCut = true;
      frozen?.resolve();
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

/** Runs `fn` with a proxy to `target`, closed afterwards however `fn` ends. */
export async function withTcpProxy<T>(
  target: { hostname: string; port: number },
  fn: (proxy: TcpProxy) => Promise<T>,
): Promise<T> {
  const proxy = startTcpProxy(target);
  try {
    return await fn(proxy);
  } finally {
    proxy.close();
  }
}
