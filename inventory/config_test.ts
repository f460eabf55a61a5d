import assert from "node:assert/strict";
import { configTests } from "../shared/testing/config_errors.ts";
import { INVENTORY_VARIABLES } from "./config.ts";

const { parse, assertConfigError } = configTests("inventory", { variables: INVENTORY_VARIABLES });

Deno.test("parseConfig() for inventory starts from its default stock, and INVENTORY_FAIL off", () => {
  const config = parse({ INVENTORY_FAIL: "", INVENTORY_STOCK: "" });
  assert.equal(config.inventoryFail, false);
  assert.equal(config.initialStock.burger, 500);
  assert.ok(Object.values(config.initialStock).every((qty) => Number.isInteger(qty) && qty >= 0));
  assert.equal(parse({ INVENTORY_FAIL: "true" }).inventoryFail, true);
});

Deno.test("parseConfig() accepts 1 and 0 for INVENTORY_FAIL", () => {
  assert.equal(parse({ INVENTORY_FAIL: "1" }).inventoryFail, true);
  assert.equal(parse({ INVENTORY_FAIL: "0" }).inventoryFail, false);
  assert.equal(parse({ INVENTORY_FAIL: "false" }).inventoryFail, false);
});

Deno.test("parseConfig() parses INVENTORY_STOCK into sku levels", () => {
  const config = parse({ INVENTORY_STOCK: "burger=3, fries=0 ,,tofu-bowl=12" });
  assert.deepEqual(config.initialStock, { burger: 3, fries: 0, "tofu-bowl": 12 });
});

Deno.test("parseConfig() rejects an INVENTORY_FAIL that is not a boolean", () => {
  assertConfigError({ INVENTORY_FAIL: "maybe" }, "INVENTORY_FAIL", "maybe");
});

Deno.test("parseConfig() rejects an INVENTORY_STOCK pair without a quantity", () => {
  assertConfigError({ INVENTORY_STOCK: "burger" }, "INVENTORY_STOCK", "burger");
});

Deno.test("parseConfig() rejects an INVENTORY_STOCK with a negative quantity", () => {
  assertConfigError({ INVENTORY_STOCK: "burger=-1" }, "INVENTORY_STOCK", "burger=-1");
});

for (const value of [",", "burger=1,burger=2"]) {
  Deno.test(`parseConfig() rejects INVENTORY_STOCK=${JSON.stringify(value)}`, () => {
    assertConfigError({ INVENTORY_STOCK: value }, "INVENTORY_STOCK", value);
  });
}
