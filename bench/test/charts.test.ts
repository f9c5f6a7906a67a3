import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { groupedBars, p99OverTime, type BarDatum } from '../src/charts';

/**
 * Renders specs (built here, from the source) with the built renderSvg in a plain node child:
 * vega is ESM-only, which jest's CommonJS runtime cannot load and node itself can (the test
 * task builds first). Returns, per spec, the overlapping axis labels and whether the SVG has `text`.
 */
function render(specs: TopLevelSpec[], text = ''): { overlaps: string[]; hasText: boolean }[] {
  const script = `
    const { renderSvg } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'charts.js'))});
    const { readFileSync, rmSync } = require('node:fs');
    const { join } = require('node:path');
    const { tmpdir } = require('node:os');
    (async () => {
      const out = [];
      for (const [i, spec] of JSON.parse(process.argv[1]).entries()) {
        const file = join(tmpdir(), 'safepkg-chart-test-' + process.pid + '-' + i + '.svg');
        const overlaps = await renderSvg(spec, file);
        out.push({ overlaps, hasText: readFileSync(file, 'utf8').includes(process.argv[2]) });
        rmSync(file);
      }
      process.stdout.write(JSON.stringify(out));
    })();`;
  return JSON.parse(
    execFileSync(process.execPath, ['-e', script, JSON.stringify(specs), text], { encoding: 'utf8' }),
  ) as { overlaps: string[]; hasText: boolean }[];
}

// Every run a full benchmark makes, each in both modes: the widest bar chart there is.
const RUNS = [
  'hit max',
  'steady max',
  'steady fixed',
  'new max',
  'storm max',
  'storm fixed',
  'storm fixed +stall',
];
const bars: BarDatum[] = RUNS.flatMap((run, i) =>
  ['buffered', 'direct'].map((mode, j) => ({ run, mode, value: 1000 * (i + 1) + 500 * j })),
);

describe('charts', () => {
  it('lay run labels out without overlaps (bars with floor ticks, bars, p99 over time), and the check finds overlaps when there are some', () => {
    const floor = RUNS.slice(0, 3).map((run) => ({ run, value: 1200 }));
    const squeezed = { ...groupedBars('t', 'packages/s', bars), width: 120 } as TopLevelSpec;
    const points = ['buffered', 'direct'].flatMap((mode) =>
      Array.from({ length: 15 }, (_, second) => ({
        mode,
        second,
        p99Ms: mode === 'direct' && second > 5 ? 3000 : 400,
      })),
    );
    const [withFloor, plain, stall, cramped] = render(
      [
        groupedBars('t', 'packages/s', bars, floor),
        groupedBars('t', 'p99 (ms)', bars),
        p99OverTime('t', points, [{ mode: 'buffered', from: 5.02, to: 8.03 }]),
        squeezed,
      ],
      'writes blocked',
    );
    expect(withFloor?.overlaps).toEqual([]);
    expect(plain?.overlaps).toEqual([]);
    expect(stall?.overlaps).toEqual([]);
    expect(stall?.hasText).toBe(true);
    expect(cramped?.overlaps.length).toBeGreaterThan(0);
  });
});
