import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';

/**
 * Renders a vega-lite spec to an SVG file. vega and vega-lite are ESM-only, so they are
 * loaded with a dynamic import() from this CommonJS workspace; the 'none' renderer
 * needs no canvas.
 */
export async function renderSvg(spec: TopLevelSpec, file: string): Promise<void> {
  const vega = await import('vega');
  const vegaLite = await import('vega-lite');
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  writeFileSync(file, await view.toSVG());
  view.finalize();
}

export interface BarDatum {
  run: string;
  mode: string;
  value: number;
}

export function groupedBars(title: string, yTitle: string, data: BarDatum[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: { step: 28 },
    height: 220,
    data: { values: data },
    mark: 'bar',
    encoding: {
      x: { field: 'run', type: 'nominal', title: null, axis: { labelAngle: 0 } },
      xOffset: { field: 'mode' },
      y: { field: 'value', type: 'quantitative', title: yTitle },
      color: { field: 'mode', type: 'nominal', title: 'WRITE_MODE' },
      tooltip: [{ field: 'value', type: 'quantitative', format: ',.1f' }],
    },
  };
}

export function drainLine(title: string, data: { tMs: number; depth: number }[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 480,
    height: 220,
    data: { values: data.map((d) => ({ seconds: d.tMs / 1000, depth: d.depth })) },
    mark: { type: 'line', point: false },
    encoding: {
      x: { field: 'seconds', type: 'quantitative', title: 'seconds since the flusher started' },
      y: { field: 'depth', type: 'quantitative', title: 'entries in the buffer' },
    },
  };
}

export function chartPath(dir: string, stamp: string, name: string): string {
  return join(dir, `${stamp}-${name}.svg`);
}
