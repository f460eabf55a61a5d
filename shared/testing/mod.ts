/**
 * What the tests of every folder share, each in a module of its own that does nothing until it is
 * called:
 *
 * - {@linkcode fakeBroker} (`fake_broker.ts`): an in-memory broker for the relay's and the
 *   consumer's unit tests, and {@linkcode testDelivery} to hand them a message;
 * - {@linkcode FakeAmqp}, {@linkcode FakeConnection} and {@linkcode FakeChannel}
 *   (`fake_channel.ts`): a fake amqplib connection and channel for the broker modules' unit tests;
 * - {@linkcode configTests} (`config_errors.ts`): a service's parser, and its refusals in one line;
 * - {@linkcode testContext} and {@linkcode handleEvents} (`message_context.ts`): a handler's
 *   context that collects what it publishes, and a batch handed to a handler as the consumer does;
 * - {@linkcode recordingLogger} (`recording_logger.ts`): a logger that keeps its lines;
 * - {@linkcode storeKinds} and {@linkcode createDatabase} (`stores.ts`): SQLite and PostgreSQL
 *   stores and databases of a test's own, skipped with one line where PostgreSQL does not answer;
 * - {@linkcode TEST_TABLES_MIGRATIONS}, {@linkcode readCounter} and {@linkcode readNotes}
 *   (`test_tables.ts`): a counter and notes for the tests of the stores themselves;
 * - {@linkcode mountTmpfs} (`tmpfs.ts`): a small disk to fill up, where the test runs as root.
 *
 * @example
 * ```ts
 * import { storeKinds } from "../shared/testing/stores.ts";
 *
 * for (const kind of await storeKinds()) {
 *   Deno.test(`orders are kept (${kind.name})`, () =>
 *     kind.with("order", [], async (store) => {
 *       // …
 *     }));
 * }
 * ```
 * @module
 */
export * from "./fake_broker.ts";
export * from "./config_errors.ts";
export * from "./fake_channel.ts";
export * from "./message_context.ts";
export * from "./recording_logger.ts";
export * from "./stores.ts";
export * from "./test_tables.ts";
export * from "./tmpfs.ts";
