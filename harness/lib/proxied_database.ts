/**
 * A PostgreSQL database of a scenario's or a test's own behind a TCP proxy it controls, so that it
 * can cut, freeze or slow down the services' link to their database and to nothing else.
 * @module
 */
import { cleanUpOnInterrupt } from "./interrupt.ts";
import { startTcpProxy, type TcpProxy, viaProxy } from "./tcp_proxy.ts";
import { createDatabase } from "../../shared/testing/stores.ts";

/** A private database and the proxy in front of it. */
export interface ProxiedDatabase {
  /** The database's URL through the proxy: what the services get as `DATABASE_URL`. */
  url: string;
  /** The database's own URL, not through the proxy: for the services the outage leaves alone. */
  directUrl: string;
  /** The proxy between the services and the database. */
  proxy: TcpProxy;
  /** Closes the proxy and drops the database. */
  close(): Promise<void>;
}

/**
 * Creates a database on the server of `TEST_DATABASE_URL` (else the local one) and starts a proxy
 * in front of it, at the host and port of the database's URL. Ctrl-C drops the database too, until
 * `close()`.
 */
export async function createProxiedDatabase(): Promise<ProxiedDatabase> {
  const database = await createDatabase();
  const forgetDatabase = cleanUpOnInterrupt(database.drop);
  let proxy: TcpProxy;
  try {
    const { hostname, port } = new URL(database.url);
    proxy = startTcpProxy({ hostname, port: Number(port) || 5432 });
  } catch (error) {
    forgetDatabase();
    await database.drop();
    throw error;
  }
  return {
    url: viaProxy(database.url, proxy),
    directUrl: database.url,
    proxy,
    async close() {
      proxy.close();
      forgetDatabase();
      await database.drop();
    },
  };
}

/** Runs `fn` with a proxied database of its own, closed and dropped afterwards however it ends. */
export async function withProxiedDatabase<T>(
  fn: (database: ProxiedDatabase) => Promise<T>,
): Promise<T> {
  const database = await createProxiedDatabase();
  try {
    return await fn(database);
  } finally {
    await database.close();
  }
}
