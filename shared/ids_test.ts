import assert from "node:assert/strict";
import { newId } from "./ids.ts";

const CROCKFORD_BASE32 = /^[0-9ABCDEFGHJKMNPQRSTVWXYZ]{26}$/;

Deno.test("newId() returns 26 Crockford base-32 characters", () => {
  for (let i = 0; i < 100; i++) {
    const id = newId();
    assert.equal(id.length, 26);
    assert.match(id, CROCKFORD_BASE32);
  }
});

Deno.test("newId() encodes the time in the first 10 characters", () => {
  assert.equal(newId(0).slice(0, 10), "0000000000");
  assert.equal(newId(1).slice(0, 10), "0000000001");
  assert.equal(newId(32).slice(0, 10), "0000000010");
  // The largest 48-bit time, as in the ULID spec.
  assert.equal(newId(2 ** 48 - 1).slice(0, 10), "7ZZZZZZZZZ");
  assert.equal(newId(1_700_000_000_000).slice(0, 10), newId(1_700_000_000_000).slice(0, 10));
});

Deno.test("newId() makes ids that sort by time", () => {
  const start = Date.UTC(2024, 0, 1);
  const times = [0, 1, 2, 31, 32, 33, 1000, 60_000, 86_400_000, 365 * 86_400_000];
  const ids = times.map((offset) => newId(start + offset));
  assert.deepEqual([...ids].sort(), ids);
  assert.ok(newId(start) < newId(start + 1));
});

Deno.test("newId() makes ids that sort by time when made out of order", () => {
  const start = Date.UTC(2024, 5, 1);
  const times = Array.from({ length: 200 }, (_, i) => start + i * 37);
  // 7 is coprime with 200, so this visits every time once, out of order.
  const shuffled = times.map((_, i) => times[(i * 7) % times.length]);
  const byId = shuffled.map((time) => ({ time, id: newId(time) }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  assert.deepEqual(byId.map((entry) => entry.time), times);
});

Deno.test("newId() defaults to the current time", () => {
  const before = newId(Date.now()).slice(0, 10);
  const id = newId().slice(0, 10);
  const after = newId(Date.now()).slice(0, 10);
  assert.ok(before <= id && id <= after, `${before} <= ${id} <= ${after}`);
});

Deno.test("newId() returns unique ids over 10k calls in the same millisecond", () => {
  const now = Date.now();
  const ids = new Set(Array.from({ length: 10_000 }, () => newId(now)));
  assert.equal(ids.size, 10_000);
});
