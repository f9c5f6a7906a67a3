import autocannon from 'autocannon';
import type { DeviceSimulator } from './devices';
import { percentiles } from './stats';

export interface LoadOptions {
  /** One base URL per api process; connections and rate are split evenly over them. */
  urls: string[];
  durationS: number;
  connections: number;
  /** Requests per second over all urls (fixed-rate, open to the rate); undefined = closed loop. */
  overallRate?: number;
  simulator: DeviceSimulator;
  /** Sent as Accept-Encoding on every request; undefined = none (the api answers identity). */
  acceptEncoding?: string;
}

export interface LoadResult {
  mode: 'closed' | 'fixed-rate';
  offeredRate: number | null;
  durationS: number;
  connections: number;
  requests: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  requestsPerS: number;
  packagesPerS: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number; mean: number };
  /**
   * Per second of the load, by when the request was sent (response time back from arrival), so
   * that the requests sent while PostgreSQL stalled show their wait in the seconds they were
   * sent; seconds without a response are left out rather than shown as 0 ms.
   */
  perSecond: { second: number; responses: number; p99Ms: number }[];
  /** Date.now() when the load started, to place other events (a write stall) on perSecond. */
  startedAtMs: number;
  /** Bytes read per response, headers included (autocannon's throughput total): bytes on the wire. */
  bytesPerResponse: number;
}

/**
 * Drives the api with autocannon: one instance per api process, each body a fresh device
 * from the simulator (setupRequest), latency of every response kept for exact p95/p99.
 * Note on fixed rate: autocannon times a request from when it is sent, so a server that
 * falls behind the offered rate shows as a lower achieved rate, not only as latency.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  const bySecond: number[][] = [];
  const statusCodes: Record<string, number> = {};
  const startedAtMs = Date.now();
  const per = options.urls.length;
  const results = await Promise.all(
    options.urls.map(
      (url, i) =>
        new Promise<autocannon.Result>((resolve, reject) => {
          const instance = autocannon(
            {
              url,
              connections: Math.max(1, Math.round(options.connections / per)),
              duration: options.durationS,
              timeout: 10,
              // The rate split exactly: the first (rate mod n) instances take one request/s more.
              ...(options.overallRate
                ? {
                    overallRate: Math.max(
                      1,
                      Math.floor(options.overallRate / per) + (i < options.overallRate % per ? 1 : 0),
                    ),
                  }
                : {}),
              requests: [
                {
                  method: 'POST',
                  path: '/v1/packages/check',
                  headers: {
                    'content-type': 'application/json',
                    ...(options.acceptEncoding ? { 'accept-encoding': options.acceptEncoding } : {}),
                  },
                  setupRequest: (req) => ({ ...req, body: options.simulator.nextBody() }),
                },
              ],
            },
            (err, result) => (err ? reject(err) : resolve(result)),
          );
          instance.on('response', (_client, statusCode, _bytes, responseTime) => {
            latencies.push(responseTime);
            const second = Math.max(0, Math.floor((Date.now() - responseTime - startedAtMs) / 1000));
            (bySecond[second] ??= []).push(responseTime);
            statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
          });
        }),
    ),
  );
  const sum = (f: (r: autocannon.Result) => number) => results.reduce((a, r) => a + f(r), 0);
  const ok = sum((r) => r['2xx']);
  const durationS = Math.max(...results.map((r) => r.duration));
  const [p50, p95, p99, max] = percentiles(latencies, [50, 95, 99, 100]) as [number, number, number, number];
  const packagesPerDevice = options.simulator.options.packagesPerDevice;
  return {
    mode: options.overallRate ? 'fixed-rate' : 'closed',
    offeredRate: options.overallRate ?? null,
    durationS,
    connections: options.connections,
    requests: latencies.length,
    ok,
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    statusCodes,
    requestsPerS: ok / durationS,
    packagesPerS: (ok * packagesPerDevice) / durationS,
    latencyMs: {
      p50,
      p95,
      p99,
      max,
      mean: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length),
    },
    perSecond: bySecond.flatMap((l, second) =>
      l.length ? [{ second, responses: l.length, p99Ms: percentiles(l, [99])[0] as number }] : [],
    ),
    startedAtMs,
    bytesPerResponse: sum((r) => r.throughput.total) / Math.max(1, latencies.length),
  };
}
