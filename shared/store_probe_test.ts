import assert from "node:assert/strict";
import { probeStore } from "./store_probe.ts";
import { storeKinds } from "./testing/stores.ts";

for (const kind of await storeKinds()) {
  Deno.test(`probeStore() commits the one probe row, however often it runs (${kind.name})`, async () => {
    await kind.with("test", [], async (store) => {
      await probeStore(store);
      const first = await store.read((tx) =>
        tx.get<{ probed_at: string }>("SELECT probed_at FROM store_probe WHERE probe_id = 1")
      );
      await probeStore(store);
      const rows = await store.read((tx) =>
        tx.all<{ probed_at: string }>("SELECT probed_at FROM store_probe")
      );
      assert.equal(rows.length, 1);
      assert.ok(rows[0]!.probed_at >= first!.probed_at, "the second probe wrote the row again");
    });
  });
}
