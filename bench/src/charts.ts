import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';

interface SceneItem {
  bounds?: { x1: number; x2: number; y1: number; y2: number };
  items?: SceneItem[];
  role?: string;
  marktype?: string;
  text?: unknown;
  x?: number;
  y?: number;
}

/** Axis labels whose boxes intersect (in the same axis), by text: what makes a chart unreadable. */
function overlappingLabels(root: SceneItem): string[] {
  const out: string[] = [];
  const visit = (node: SceneItem, path: string) => {
    if (node.role === 'axis-label' && node.items) {
      const boxes = node.items.filter((i) => i.bounds && i.text !== '' && i.text !== undefined);
      for (let a = 0; a < boxes.length; a++)
        for (let b = a + 1; b < boxes.length; b++) {
          const p = (boxes[a] as SceneItem).bounds as NonNullable<SceneItem['bounds']>;
          const q = (boxes[b] as SceneItem).bounds as NonNullable<SceneItem['bounds']>;
          if (p.x1 < q.x2 && q.x1 < p.x2 && p.y1 < q.y2 && q.y1 < p.y2)
            out.push(`${path}: "${String(boxes[a]?.text)}" × "${String(boxes[b]?.text)}"`);
        }
    }
    for (const child of node.items ?? []) visit(child, node.role ? `${path}/${node.role}` : path);
  };
  visit(root, '');
  return out;
}

/**
 * Renders a vega-lite spec to an SVG file and returns the axis labels that overlap (none,
 * for a readable chart). vega and vega-lite are ESM-only, so they are loaded with a dynamic
 * import() from this CommonJS workspace; the 'none' renderer needs no canvas, and vega
 * measures text without one by its own estimate, which is what the overlap check uses.
 */
export async function renderSvg(spec: TopLevelSpec, file: string | null): Promise<string[]> {
  const vega = await import('vega');
  const vegaLite = await import('vega-lite');
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  if (file) writeFileSync(file, svg);
  const overlaps = overlappingLabels((view.scenegraph() as unknown as { root: SceneItem }).root);
  view.finalize();
  return overlaps;
}

export interface BarDatum {
  run: string;
  mode: string;
  value: number;
}

/** A run's floor (same load, the floor server): drawn as a black tick over the run's bars. */
export interface FloorDatum {
  run: string;
  value: number;
}

/**
 * Bars per run and write mode; run names are broken into lines at spaces (one word per line,
 * horizontal), so neighbouring labels never overlap however many runs there are.
 */
export function groupedBars(
  title: string,
  yTitle: string,
  data: BarDatum[],
  floor: FloorDatum[] = [],
): TopLevelSpec {
  const x = {
    field: 'run',
    type: 'nominal',
    title: null,
    sort: null,
    axis: { labelAngle: 0, labelExpr: "split(datum.label, ' ')", labelLineHeight: 12 },
  } as const;
  const y = { field: 'value', type: 'quantitative', title: yTitle } as const;
  const bars = {
    mark: 'bar',
    encoding: {
      x,
      xOffset: { field: 'mode' },
      y,
      color: { field: 'mode', type: 'nominal', title: 'WRITE_MODE' },
      tooltip: [
        { field: 'mode', type: 'nominal' },
        { field: 'value', type: 'quantitative', format: ',.1f' },
      ],
    },
  } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    // A fixed width, not a step: the tick layer has no xOffset, and steps would conflict.
    width: Math.max(160, new Set(data.map((d) => d.run)).size * 64),
    height: 220,
    data: {
      values: [...data.map((d) => ({ ...d, kind: 'run' })), ...floor.map((f) => ({ ...f, kind: 'floor' }))],
    },
    layer: [
      { ...bars, transform: [{ filter: "datum.kind === 'run'" }] },
      ...(floor.length
        ? [
            {
              transform: [{ filter: "datum.kind === 'floor'" }],
              mark: { type: 'tick', color: 'black', thickness: 2, size: 40 },
              encoding: { x, y, tooltip: [{ field: 'value', type: 'quantitative', format: ',.2f' }] },
            } as const,
            {
              transform: [{ filter: "datum.kind === 'floor'" }],
              mark: { type: 'text', dy: -8, fontSize: 9, text: 'floor' },
              encoding: { x, y },
            } as const,
          ]
        : []),
    ],
  } as TopLevelSpec;
}

export interface P99Point {
  mode: string;
  second: number;
  p99Ms: number;
}

/**
 * p99 latency per second of the load, one line per write mode, with the seconds PostgreSQL's
 * writes were blocked shaded (one band per mode's run, labelled).
 */
export function p99OverTime(
  title: string,
  points: P99Point[],
  stalls: { mode: string; from: number; to: number }[],
): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 520,
    height: 240,
    layer: [
      {
        data: { values: stalls },
        mark: { type: 'rect', opacity: 0.15, color: 'firebrick' },
        encoding: {
          x: { field: 'from', type: 'quantitative' },
          x2: { field: 'to' },
        },
      },
      {
        data: { values: stalls.slice(0, 1) },
        mark: { type: 'text', align: 'left', baseline: 'top', dx: 3, y: 3, fontSize: 10, color: 'firebrick' },
        encoding: { x: { field: 'from', type: 'quantitative' }, text: { value: 'writes blocked' } },
      },
      {
        data: { values: points },
        mark: { type: 'line', point: { size: 12 } },
        encoding: {
          x: { field: 'second', type: 'quantitative', title: 'second of the load the request was sent in' },
          y: { field: 'p99Ms', type: 'quantitative', title: 'p99 of those requests (ms)' },
          color: { field: 'mode', type: 'nominal', title: 'WRITE_MODE' },
        },
      },
    ],
  } as TopLevelSpec;
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
