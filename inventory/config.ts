/**
 * What the inventory service reads from the environment besides what every service reads.
 * @module
 */
import { z } from "zod";
import { bool, duration, variable } from "../shared/config.ts";

const DEFAULT_STOCK =
  "burger=500,fries=500,salad=300,pizza=300,wrap=300,soda=1000,coffee=1000,cookie=800";

/** `sku=qty` pairs, comma-separated: the stock levels to start with. */
const stock = z.string().transform((text, ctx) => {
  const result: Record<string, number> = {};
  for (const pair of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const match = /^([^=\s]{1,64})=(\d{1,9})$/.exec(pair);
    if (!match) {
      ctx.addIssue({ code: "custom", message: `sku=qty pairs, comma-separated (at "${pair}")` });
      return z.NEVER;
    }
    if (match[1] in result) {
      ctx.addIssue({ code: "custom", message: `"${match[1]}" is given twice` });
      return z.NEVER;
    }
    result[match[1]] = Number(match[2]);
  }
  if (Object.keys(result).length === 0) {
    ctx.addIssue({ code: "custom", message: "at least one sku=qty pair" });
    return z.NEVER;
  }
  return result;
});

/** The inventory service's own variables. */
export const INVENTORY_VARIABLES = {
  /** Refuse every order (`InventoryFailed`, reason `simulated failure`): for demonstrations. */
  inventoryFail: variable("INVENTORY_FAIL", bool.prefault("false"), { expected: "true or false" }),
  /** Stock levels seeded into an empty table; existing levels are kept. */
  initialStock: variable("INVENTORY_STOCK", stock.prefault(DEFAULT_STOCK), {
    expected: "sku=qty pairs such as burger=500,fries=500",
  }),
  /**
   * How far inventory's clock may run ahead of the order service's before it takes a fresh order
   * for an expired one, in milliseconds.
   */
  clockSkewToleranceMs: variable("CLOCK_SKEW_TOLERANCE", duration.prefault("5m"), {
    expected: "a duration such as 30s, 5m or 1h",
  }),
};
