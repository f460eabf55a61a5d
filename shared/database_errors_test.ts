import assert from "node:assert/strict";
// @ts-types="@types/pg"
import pg from "pg";
import { isPostgresOutage, isSqliteOutage } from "./database_errors.ts";

/** An error as the driver gives it for a statement the server refused with `sqlstate`. */
function serverError(sqlstate: string, message = "server error"): pg.DatabaseError {
  return Object.assign(new pg.DatabaseError(message, message.length, "error"), { code: sqlstate });
}

/** An error as Node's sockets give it. */
function socketError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code });
}

/** What a case is, the error, and whether it is an outage. */
type OutageCase = [what: string, error: unknown, outage: boolean];

const SQLITE_CASES: OutageCase[] = [
  ["a full disk", new Error("database or disk is full"), true],
  ["an I/O error", new Error("disk I/O error"), true],
  ["a read-only file", new Error("attempt to write a readonly database"), true],
  ["a file it cannot open", new Error("unable to open database file"), true],
  ["a lock held past the busy timeout", new Error("database is locked"), true],
  [
    "an outage as the cause",
    new Error("Cannot commit", { cause: new Error("disk I/O error") }),
    true,
  ],
  ["a constraint", new Error("NOT NULL constraint failed: notes.text"), false],
  ["a syntax error", new Error('near "SELEC": syntax error'), false],
  ["a message that is not an Error", "database or disk is full", false],
  ["nothing", undefined, false],
];

for (const [what, error, outage] of SQLITE_CASES) {
  Deno.test(`isSqliteOutage() is ${outage} for ${what}`, () => {
    assert.equal(isSqliteOutage(error), outage);
  });
}

/** SQLSTATEs the server reports an outage with, each with what it is. */
const OUTAGE_SQLSTATES = [
  "08006 connection failure",
  "53100 disk full",
  "53300 too many connections",
  "57P01 administrator shutdown",
  "57P03 cannot connect now",
  "57P05 idle session timeout",
  "58030 I/O error",
  "25006 read-only transaction",
];

/** SQLSTATEs of failures that are no outage, each with what it is. */
const OTHER_SQLSTATES = [
  "57014 query canceled",
  "57P06, past the shutdown codes",
  "23505 unique violation",
  "40P01 deadlock, which runs again instead",
  "42P01 undefined table",
];

/** The codes Node's sockets give where the server cannot be reached. */
const UNREACHABLE_CODES = ["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN"];

/** The errors of a server that refused a statement, as cases. */
function serverCases(described: string[], outage: boolean): OutageCase[] {
  return described.map((what) => [what, serverError(what.slice(0, 5)), outage]);
}

const POSTGRES_CASES: OutageCase[] = [
  ...serverCases(OUTAGE_SQLSTATES, true),
  ...serverCases(OTHER_SQLSTATES, false),
  [
    "a server error whose message reads like a lost connection",
    serverError("23505", "Connection terminated"),
    false,
  ],
  ...UNREACHABLE_CODES.map((code): OutageCase => [code, socketError(code), true]),
  ["a socket error that is not about reaching the server", socketError("EACCES"), false],
  ["the driver's terminated connection", new Error("Connection terminated unexpectedly"), true],
  ["the driver's connect timeout", new Error("timeout exceeded when trying to connect"), true],
  ["the driver's query read timeout", new Error("Query read timeout"), true],
  [
    "a connection error as the cause",
    new Error("Cannot place the order", { cause: socketError("ECONNRESET") }),
    true,
  ],
  [
    "a server outage as the cause",
    new Error("Cannot place the order", { cause: serverError("57P01") }),
    true,
  ],
  ["an error of the handler", new Error("Cannot place the order: the item is sold out"), false],
  ["nothing", undefined, false],
];

for (const [what, error, outage] of POSTGRES_CASES) {
  Deno.test(`isPostgresOutage() is ${outage} for ${what}`, () => {
    assert.equal(isPostgresOutage(error, pg.DatabaseError), outage);
  });
}
