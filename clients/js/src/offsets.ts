// Offsets are `<16 digits>_<16 digits>`: one 32-digit position. Strings compare in stream
// order; arithmetic goes through BigInt.

const SPLIT = 10n ** 16n;

/** The position an offset names. */
export function position(offset: string): bigint {
  const match = /^(\d{16})_(\d{16})$/.exec(offset);
  if (!match) throw new Error(`not an agentwire offset: ${offset}`);
  return BigInt(match[1]) * SPLIT + BigInt(match[2]);
}

/** The offset of a position. */
export function offsetOf(position: bigint): string {
  const hi = (position / SPLIT).toString().padStart(16, "0");
  const lo = (position % SPLIT).toString().padStart(16, "0");
  return `${hi}_${lo}`;
}

/** The offset `n` events after `offset`. */
export function advance(offset: string, n = 1): string {
  return offsetOf(position(offset) + BigInt(n));
}

/** The start of every session. */
export const START = offsetOf(0n);
