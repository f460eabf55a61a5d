/**
 * Latency percentiles of a list of samples, as the benchmark, the soak and the scenarios report
 * them.
 * @module
 */

/** Latency percentiles, in milliseconds. */
export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** How many samples they summarise. */
  count: number;
}

/**
 * The nearest-rank percentiles of `samples` (milliseconds), rounded to 0.1 ms.
 * @throws {RangeError} when there are no samples: a percentile of nothing is not 0
 */
export function percentiles(samples: readonly number[]): Percentiles {
  if (samples.length === 0) {
    throw new RangeError("Cannot compute percentiles as there are no samples");
  }
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
  const tenth = (value: number) => Math.round(value * 10) / 10;
  return {
    p50: tenth(rank(50)),
    p95: tenth(rank(95)),
    p99: tenth(rank(99)),
    max: tenth(sorted[sorted.length - 1]),
    count: sorted.length,
  };
}
