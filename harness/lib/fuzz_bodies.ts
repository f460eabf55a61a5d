/**
 * Bodies for `POST /order`: valid orders at the edges of what the contract allows (user_id 1-128
 * characters, 1-50 items, sku 1-64, qty 1-100, up to 64 KiB), and every way of getting one wrong:
 * invalid JSON, deep nesting, huge arrays, wrong types, unknown fields, values one past an edge,
 * control characters, invalid UTF-8 bytes, sizes either side of 64 KiB. Each body says whether the
 * contract makes it acceptable, so that the fuzzer can tell a refusal it expects from a bug.
 * @module
 */
import fc from "fast-check";

/** Whether the contract lets a part of a request through: yes, no, or it does not say. */
export type Verdict = "ok" | "bad" | "maybe";

/** A body for `POST /order`. */
export interface OrderBody {
  /** What it is, for a counterexample: "valid", "qty 101", "deep nesting 5000"… */
  label: string;
  bytes: Uint8Array;
  verdict: Verdict;
  /**
   * The `user_id` it names when it is otherwise valid; undefined when it names none, which only a
   * bearer token's subject can make up for.
   */
  userId?: string;
}

/** The largest body the order service takes, in bytes (`MAX_BODY_BYTES`). */
export const BODY_LIMIT_BYTES = 64 * 1024;

const encoder = new TextEncoder();

/** A control character (Unicode category Cc), which the contract keeps out of user_id and sku. */
const CONTROL = /\p{Cc}/u;

/**
 * Characters the contract says nothing of, which the order service refuses as "not printable":
 * format characters (bidi marks, zero-width), line and paragraph separators, lone surrogates.
 */
const UNDECIDED = /\p{Cf}|\p{Cs}|\p{Zl}|\p{Zp}/u;

/** A printable string of `min`-`max` UTF-16 code units, its edges more often than the rest. */
function printable(min: number, max: number): fc.Arbitrary<string> {
  const unit = fc.oneof(
    { weight: 4, arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 1 }) },
    { weight: 1, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 }) },
  ).filter((text) => !CONTROL.test(text) && !UNDECIDED.test(text));
  return fc.oneof(
    fc.array(unit, { minLength: min, maxLength: Math.min(max, min + 24) }).map((parts) =>
      parts.join("")
    ),
    fc.tuple(fc.constantFrom(min, max), unit).map(([length, c]) => c.repeat(length)),
  ).filter((text) => text.length >= min && text.length <= max);
}

/** A valid `user_id`: 1-128 characters, none of them a control character. */
export function userIdArbitrary(): fc.Arbitrary<string> {
  return printable(1, 128);
}

/** A valid item: `sku` 1-64 characters, `qty` an integer 1-100. */
function itemArbitrary(): fc.Arbitrary<{ sku: string; qty: number }> {
  return fc.record({
    sku: fc.oneof({ weight: 3, arbitrary: fc.constantFrom("burger", "fries") }, printable(1, 64)),
    qty: fc.oneof(fc.constantFrom(1, 100), fc.integer({ min: 1, max: 100 })),
  });
}

/** A valid order, with or without a `user_id` of its own. */
function validOrder(): fc.Arbitrary<{ user_id?: string; items: unknown[] }> {
  return fc.record({
    user_id: fc.option(userIdArbitrary(), { freq: 8, nil: undefined }),
    items: fc.oneof(
      { weight: 4, arbitrary: fc.array(itemArbitrary(), { minLength: 1, maxLength: 3 }) },
      {
        weight: 1,
        arbitrary: fc.tuple(itemArbitrary(), fc.constantFrom(49, 50))
          .map(([item, n]) => Array.from({ length: n }, () => item)),
      },
    ),
  }, { requiredKeys: ["items"] });
}

function jsonBody(label: string, value: unknown, verdict: Verdict): OrderBody {
  const userId = (value as { user_id?: unknown })?.user_id;
  return {
    label,
    bytes: encoder.encode(JSON.stringify(value)),
    verdict,
    userId: typeof userId === "string" ? userId : undefined,
  };
}

/** A valid order with one field replaced by `value`: refused, as `label` says why. */
function withField(path: "user_id" | "items" | "sku" | "qty" | "item", value: unknown) {
  return (order: { user_id?: string; items: unknown[] }) => {
    const copy = structuredClone(order) as Record<string, unknown> & { items: unknown[] };
    if (path === "user_id" || path === "items") (copy as Record<string, unknown>)[path] = value;
    else if (path === "item") copy.items[0] = value;
    else (copy.items[0] as Record<string, unknown>)[path] = value;
    return copy;
  };
}

/** One wrong value per field, each refused by the contract. */
function wrongField(): fc.Arbitrary<OrderBody> {
  const control = fc.tuple(printable(0, 10), fc.integer({ min: 0, max: 0x9f }), printable(0, 10))
    .filter(([, code]) => CONTROL.test(String.fromCharCode(code)))
    .map(([a, code, b]) => a + String.fromCharCode(code) + b);
  const cases: Array<[string, fc.Arbitrary<unknown>]> = [
    ["user_id", fc.constantFrom("", 1, null, true, [], {}, "u".repeat(129))],
    ["user_id", printable(129, 400)],
    ["user_id", control],
    ["items", fc.constantFrom([], {}, "burger", null, 1, [null], [[]], ["burger"])],
    ["sku", fc.constantFrom("", 1, null, [], {}, "s".repeat(65))],
    ["sku", printable(65, 300)],
    ["sku", control],
    ["qty", fc.constantFrom(0, 101, -1, 1.5, "1", null, true, 1e308, -0, 2 ** 53 + 1, [], {})],
    ["qty", fc.oneof(fc.integer({ max: 0 }), fc.integer({ min: 101 }))],
    ["qty", fc.double({ noInteger: true })],
    ["item", fc.constantFrom({}, { sku: "burger" }, { qty: 1 }, { sku: "burger", qty: 1, x: 1 })],
  ];
  return fc.oneof(
    ...cases.map(([field, value]) =>
      fc.tuple(validOrder(), value).map(([order, wrong]) => {
        const body = withField(field as "qty", wrong)(order);
        // -0 and 1e308 read back from JSON as 0 and 1e308: still refused.
        return jsonBody(`${field} ${JSON.stringify(wrong)?.slice(0, 40)}`, body, "bad");
      })
    ),
    fc.tuple(validOrder(), fc.string({ maxLength: 20 }), fc.jsonValue({ maxDepth: 2 })).map((
      [order, key, value],
    ) =>
      jsonBody(
        `unknown field ${JSON.stringify(key)}`,
        { ...order, [key === "user_id" || key === "items" ? `${key}_` : key]: value },
        "bad",
      )
    ),
    validOrder().map((order) =>
      jsonBody("51 items or more", {
        ...order,
        items: Array.from({ length: 51 + order.items.length * 600 }, () => order.items[0]),
      }, "bad")
    ),
  );
}

/** Bodies that are no JSON object at all. */
function notAnOrder(): fc.Arbitrary<OrderBody> {
  const text = (label: string, body: string): OrderBody => ({
    label,
    bytes: encoder.encode(body),
    verdict: "bad",
  });
  return fc.oneof(
    fc.constantFrom("", " ", "null", "[]", "{}", '"x"', "1", "true", "{", "}", "{'user_id':1}")
      .map((body) => text(`text ${JSON.stringify(body)}`, body)),
    fc.string({ maxLength: 200 }).filter((body) => !isJsonObject(body)).map((body) =>
      text("random text", body)
    ),
    fc.jsonValue({ maxDepth: 3 }).filter((value) => !isPlainObject(value)).map((value) =>
      text("JSON, not an object", JSON.stringify(value))
    ),
    validOrder().map((order) => {
      const json = JSON.stringify(order);
      return text("truncated JSON", json.slice(0, Math.max(1, json.length - 1)));
    }),
    validOrder().map((order) => text("trailing comma", JSON.stringify(order).replace(/}$/, ",}"))),
    validOrder().map((order) =>
      text("literal control character", JSON.stringify(order).replace(/"items"/, '"it\u0001ems"'))
    ),
    fc.integer({ min: 1, max: 30_000 }).map((depth) =>
      text(`array nested ${depth} deep`, "[".repeat(depth) + "]".repeat(depth))
    ),
    fc.integer({ min: 1, max: 20_000 }).map((depth) =>
      text(
        `sku nested ${depth} deep`,
        `{"user_id":"u","items":[{"sku":${'{"a":'.repeat(depth)}1${"}".repeat(depth)},"qty":1}]}`,
      )
    ),
    fc.integer({ min: 1, max: 30_000 }).map((n) =>
      text(`array of ${n} numbers`, `[${"1,".repeat(n)}1]`)
    ),
  );
}

/** A valid order with bytes that are not UTF-8 in its user_id: not JSON text (RFC 8259 §8.1). */
function invalidUtf8(): fc.Arbitrary<OrderBody> {
  return fc.tuple(
    fc.constantFrom([0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [
      0x80,
    ]),
    fc.array(itemArbitrary(), { minLength: 1, maxLength: 2 }),
  ).map(([bad, items]) => {
    const [head, tail] = JSON.stringify({ user_id: "u\u0000", items }).split("\\u0000");
    const bytes = new Uint8Array([...encoder.encode(head), ...bad, ...encoder.encode(tail)]);
    return {
      label: `invalid UTF-8 ${bad.map((b) => b.toString(16)).join(" ")}`,
      bytes,
      verdict: "bad",
    };
  });
}

/** Bodies the contract does not decide: a byte-order mark, repeated keys, a lone surrogate. */
function undecided(): fc.Arbitrary<OrderBody> {
  return fc.oneof(
    validOrder().map((order): OrderBody => ({
      ...jsonBody("byte-order mark", order, "maybe"),
      bytes: encoder.encode("\ufeff" + JSON.stringify(order)),
    })),
    validOrder().map((order): OrderBody => ({
      label: "user_id given twice",
      bytes: encoder.encode(`{"user_id":"first",${JSON.stringify(order).slice(1)}`),
      verdict: "maybe",
      userId: order.user_id ?? "first",
    })),
    fc.array(itemArbitrary(), { minLength: 1, maxLength: 2 }).map((items) =>
      jsonBody("lone surrogate", { user_id: "u\ud800", items }, "maybe")
    ),
    fc.tuple(
      fc.constantFrom("\u200b", "\u202e", "\u2066", "\u2028", "\u2029", "\ufeff"),
      fc.array(itemArbitrary(), { minLength: 1, maxLength: 2 }),
    ).map(([character, items]) =>
      jsonBody(
        `format character U+${character.charCodeAt(0).toString(16)}`,
        { user_id: `u${character}`, items },
        "maybe",
      )
    ),
  );
}

/** A valid order padded with spaces to `size` bytes: taken up to 64 KiB, refused with 413 past it. */
function nearTheLimit(): fc.Arbitrary<OrderBody> {
  return fc.tuple(validOrder(), fc.integer({ min: -64, max: 64 })).map(([order, offset]) => {
    const json = encoder.encode(JSON.stringify(order));
    const size = BODY_LIMIT_BYTES + offset;
    const body = jsonBody(
      `valid, padded to ${size} bytes`,
      order,
      size <= BODY_LIMIT_BYTES ? "ok" : "bad",
    );
    // Padded by bytes, not characters: a user_id may hold characters of 2-4 bytes.
    const bytes = new Uint8Array(Math.max(size, json.length)).fill(0x20);
    bytes.set(json);
    return { ...body, bytes };
  });
}

/** Any body for `POST /order`: valid ones about a third of the time. */
export function orderBodyArbitrary(): fc.Arbitrary<OrderBody> {
  return fc.oneof(
    { weight: 10, arbitrary: validOrder().map((order) => jsonBody("valid", order, "ok")) },
    { weight: 6, arbitrary: wrongField() },
    { weight: 4, arbitrary: notAnOrder() },
    { weight: 1, arbitrary: invalidUtf8() },
    { weight: 1, arbitrary: undecided() },
    { weight: 1, arbitrary: nearTheLimit() },
  );
}

function isPlainObject(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isJsonObject(text: string): boolean {
  try {
    return isPlainObject(JSON.parse(text));
  } catch {
    return false;
  }
}
