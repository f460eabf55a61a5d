/**
 * Integration tests that need PostgreSQL: skipped where it does not answer (outside CI), each on a
 * database of its own, dropped afterwards however the test ends.
 * @module
 */
import {
  createDatabase,
  postgresUnavailable,
  type TestDatabase,
} from "../../shared/testing/stores.ts";
import { INTEGRATION } from "./stack.ts";

/** The `Deno.test` options of an integration test that needs PostgreSQL. */
export const ON_POSTGRES = {
  ...INTEGRATION,
  ignore: (await postgresUnavailable()) !== undefined,
} as const;

/** Registers a test named `name` that runs `fn` on a PostgreSQL database of its own. */
export function postgresTest(name: string, fn: (database: TestDatabase) => Promise<void>): void {
  Deno.test(name, ON_POSTGRES, async () => {
    const database = await createDatabase();
    try {
      await fn(database);
    } finally {
      await database.drop();
    }
  });
}
