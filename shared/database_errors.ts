/**
 * Whether an error says the database is out (it cannot be reached or written: unreachable, lost
 * the connection, shutting down, out of connections, disk or memory, read-only) rather than that a
 * statement failed for its data: an outage pauses consumers instead of failing their messages (see
 * `Store.isOutage` in `store.ts`).
 * @module
 */
// @ts-types="@types/pg"
import type pg from "pg";
import { errorChain } from "./log.ts";

/**
 * SQLite's messages (`sqlite3_errstr`, as `node:sqlite` reports them) for a file it cannot write:
 * SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN, and SQLITE_BUSY once the busy
 * timeout has passed (another process holds the lock). A constraint or a syntax error is not here.
 */
const SQLITE_OUTAGE =
  /database or disk is full|disk I\/O error|readonly database|unable to open database file|database is locked/;

/** True when `error` or one of its causes is SQLite failing to write its file. */
export function isSqliteOutage(error: unknown): boolean {
  return errorChain(error).some((e) => e instanceof Error && SQLITE_OUTAGE.test(e.message));
}

/**
 * True when `error` or one of its causes is a PostgreSQL server that cannot serve (an error of the
 * server, `databaseError`, with an outage's SQLSTATE) or that the driver cannot reach or lost.
 * @param databaseError the driver's class of the server's errors, passed in so that a service on
 * SQLite never loads the driver
 */
export function isPostgresOutage(
  error: unknown,
  databaseError: typeof pg.DatabaseError,
): boolean {
  return errorChain(error).some((e) =>
    e instanceof databaseError ? isOutageSqlstate(e.code) : isConnectionLost(e)
  );
}

/**
 * SQLSTATEs of a server that cannot serve, whatever the statement: class 08 (connection
 * exception), 53 (insufficient resources: disk full, out of memory, too many connections), 57P01–
 * 57P05 (administrator or crash shutdown, cannot connect now, idle session timeout), 58 (system or
 * I/O error), and 25006 (read-only: connected to a standby after a failover).
 */
function isOutageSqlstate(code: string | undefined): boolean {
  return code !== undefined &&
    (/^(08|53|58)/.test(code) || /^57P0[1-5]$/.test(code) || code === "25006");
}

/** The driver's own errors, and the socket's, for a server it cannot reach or lost. */
const CONNECTION_LOST =
  /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout)/;
const SOCKET_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

function isConnectionLost(error: unknown): boolean {
  return error instanceof Error &&
    (SOCKET_ERRORS.has((error as { code?: string }).code ?? "") ||
      CONNECTION_LOST.test(error.message));
}
