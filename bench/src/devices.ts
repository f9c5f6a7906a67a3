import type { PackageRef } from '@safepkg/core';
import type { Catalogue, PackageKind } from './catalogue';
import { Random } from './random';

/** Share of each kind of package in a device's check; they sum to 1. */
export interface PackageShares {
  known: number;
  hot: number;
  tail: number;
}

export interface DeviceOptions {
  seed: number;
  /** Names the long-tail namespace, so two simulators never invent the same package. */
  stream: string;
  packagesPerDevice: number;
  shares: PackageShares;
}

export interface Device {
  packages: PackageRef[];
  kinds: PackageKind[];
}

/**
 * Virtual devices, each reporting `packagesPerDevice` distinct packages drawn by kind
 * (known apps by Zipf popularity, hot new releases by Zipf over the hot set, and
 * never-seen long-tail packages). Deterministic for a seed and stream.
 */
export class DeviceSimulator {
  private readonly rng: Random;
  private tailCounter = 0;
  devices = 0;

  constructor(
    private readonly catalogue: Catalogue,
    readonly options: DeviceOptions,
  ) {
    const total = options.shares.known + options.shares.hot + options.shares.tail;
    if (Math.abs(total - 1) > 1e-9) throw new RangeError(`package shares must sum to 1, not ${total}`);
    this.rng = new Random(options.seed);
  }

  private kind(): PackageKind {
    const u = this.rng.next();
    const { known, hot } = this.options.shares;
    return u < known ? 'known' : u < known + hot ? 'hot' : 'tail';
  }

  /** Draws one device's packages as indexes (known/hot) or tail refs, distinct within the device. */
  private draw(): { kind: PackageKind; index: number; tail?: PackageRef }[] {
    const seenKnown = new Set<number>();
    const seenHot = new Set<number>();
    const out: { kind: PackageKind; index: number; tail?: PackageRef }[] = [];
    while (out.length < this.options.packagesPerDevice) {
      let kind = this.kind();
      // A device holds each app once; after a few collisions in a tiny set, fall back to the tail.
      if (kind !== 'tail') {
        const [zipf, seen] =
          kind === 'known' ? [this.catalogue.knownZipf, seenKnown] : [this.catalogue.hotZipf, seenHot];
        let index = -1;
        for (let attempt = 0; attempt < 20 && index < 0; attempt++) {
          const i = zipf.sample(this.rng);
          if (!seen.has(i)) index = i;
        }
        if (index >= 0) {
          seen.add(index);
          out.push({ kind, index });
          continue;
        }
        kind = 'tail';
      }
      const n = this.tailCounter++;
      out.push({ kind, index: n, tail: this.catalogue.tail(this.options.stream, n, this.rng) });
    }
    this.devices++;
    return out;
  }

  next(): Device {
    const drawn = this.draw();
    return {
      packages: drawn.map((d) =>
        d.kind === 'known'
          ? this.catalogue.known(d.index)
          : d.kind === 'hot'
            ? this.catalogue.hot(d.index)
            : (d.tail as PackageRef),
      ),
      kinds: drawn.map((d) => d.kind),
    };
  }

  /** The next device's check as a request body (what the load generator sends). */
  nextBody(): string {
    const parts = this.draw().map((d) =>
      d.kind === 'known'
        ? this.catalogue.knownFragment(d.index)
        : d.kind === 'hot'
          ? this.catalogue.hotFragment(d.index)
          : JSON.stringify(d.tail),
    );
    return `{"packages":[${parts.join(',')}]}`;
  }
}
