/**
 * The campus menu the harness orders from, and stock as `INVENTORY_STOCK` takes it.
 * @module
 */

/** The SKUs of the services' default stock. */
export const MENU: readonly string[] = [
  "burger",
  "fries",
  "salad",
  "pizza",
  "wrap",
  "soda",
  "coffee",
  "cookie",
];

/** `stock` as `INVENTORY_STOCK` takes it: `burger=500,fries=500`. */
export function stockEnv(stock: Readonly<Record<string, number>>): string {
  return Object.entries(stock).map(([sku, qty]) => `${sku}=${qty}`).join(",");
}

/** `qty` of every SKU of the menu. */
export function menuStock(qty: number): Record<string, number> {
  return Object.fromEntries(MENU.map((sku) => [sku, qty]));
}
