import { packageRefSchema } from '@safepkg/core';
import { Catalogue } from '../src/catalogue';
import { DeviceSimulator, type PackageShares } from '../src/devices';

const catalogue = new Catalogue({ seed: 7, knownApps: 5000, knownExponent: 1, hotApps: 200, hotExponent: 1 });

function simulator(shares: PackageShares, seed = 11) {
  return new DeviceSimulator(catalogue, { seed, stream: 't', packagesPerDevice: 100, shares });
}

describe('device simulator', () => {
  it('is deterministic for a seed and differs for another seed', () => {
    const shares = { known: 0.9, hot: 0.05, tail: 0.05 };
    const a = simulator(shares);
    const b = simulator(shares);
    const bodiesA = Array.from({ length: 20 }, () => a.nextBody());
    expect(Array.from({ length: 20 }, () => b.nextBody())).toEqual(bodiesA);
    const c = simulator(shares, 12);
    expect(Array.from({ length: 20 }, () => c.nextBody())).not.toEqual(bodiesA);
  });

  it('gives each device the configured number of distinct, valid packages in the configured shares', () => {
    const sim = simulator({ known: 0.5, hot: 0.1, tail: 0.4 });
    const counts = { known: 0, hot: 0, tail: 0 };
    for (let d = 0; d < 400; d++) {
      const device = sim.next();
      expect(device.packages).toHaveLength(100);
      const keys = new Set(device.packages.map((p) => `${p.name}:${p.versionCode}:${p.signature}`));
      expect(keys.size).toBe(100);
      for (const p of device.packages) expect(packageRefSchema.safeParse(p).success).toBe(true);
      for (const k of device.kinds) counts[k]++;
    }
    const total = 400 * 100;
    expect(counts.known / total).toBeCloseTo(0.5, 1);
    expect(counts.hot / total).toBeCloseTo(0.1, 1);
    expect(counts.tail / total).toBeCloseTo(0.4, 1);
  });

  it('draws known apps with a Zipf-shaped popularity and never repeats a tail package', () => {
    const sim = simulator({ known: 0.8, hot: 0, tail: 0.2 });
    const knownHits = new Map<string, number>();
    const tails = new Set<string>();
    let tailCount = 0;
    for (let d = 0; d < 500; d++) {
      const device = sim.next();
      device.packages.forEach((p, i) => {
        if (device.kinds[i] === 'known') knownHits.set(p.name, (knownHits.get(p.name) ?? 0) + 1);
        else {
          tailCount++;
          tails.add(`${p.name}:${p.signature}`);
        }
      });
    }
    const rank = (i: number) => knownHits.get(catalogue.known(i).name) ?? 0;
    // The most popular app is on (nearly) every device; rank 100 on far fewer; the long end rarely.
    expect(rank(0)).toBeGreaterThan(450);
    expect(rank(0)).toBeGreaterThan(3 * rank(100));
    expect(rank(100)).toBeGreaterThan(rank(4000));
    expect(tails.size).toBe(tailCount);
  });

  it('renders the same packages in the body as in next()', () => {
    const shares = { known: 0.6, hot: 0.2, tail: 0.2 };
    const body = JSON.parse(simulator(shares).nextBody()) as { packages: unknown[] };
    expect(body.packages).toEqual(simulator(shares).next().packages);
  });
});
