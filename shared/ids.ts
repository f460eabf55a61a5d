/**
 * Identifiers: ULIDs, which sort by creation time and read well in logs ("order 01J…").
 * @module
 */

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** Returns a new ULID: 48 bits of milliseconds and 80 random bits, 26 Crockford base-32 characters. */
export function newId(now: number = Date.now()): string {
  if (!Number.isInteger(now) || now < 0 || now >= 2 ** 48) {
    throw new RangeError(
      `Cannot make an id as now must be an integer 0 to 2^48-1: current value is ${now}`,
    );
  }
  let time = "";
  for (let t = now, i = 0; i < 10; i++, t = Math.floor(t / 32)) time = ALPHABET[t % 32] + time;
  let random = "";
  for (const byte of crypto.getRandomValues(new Uint8Array(16))) random += ALPHABET[byte & 31];
  return time + random;
}
