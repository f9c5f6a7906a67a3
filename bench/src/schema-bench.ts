import { createHash } from 'node:crypto';
import { listMigrations, migrate } from '@safepkg/core';
import type { Client } from 'pg';
import { copyLines, pgUrl, withClient } from './bench-database';
import { Random } from './random';
import { percentiles } from './stats';

/**
 * Issue 9's schema measurements, in a scratch database of its own holding ≥ 1M packages:
 * status columns + covering index vs a join over packages and the latest evaluations;
 * flush insert cost of those columns; statement-level vs row-level verdict trigger.
 */
const SCHEMA_DATABASE = 'safepkg_bench_schema';

export interface SchemaResult {
  packages: number;
  evaluatedShare: number;
  lookup: {
    keys: number;
    iterations: number;
    statusColumnsMs: number;
    joinMs: number;
    /** join / status columns: how many times faster the status-column lookup is (client round trip). */
    speedup: number;
    /** The same on the server alone: EXPLAIN ANALYZE execution time (no parse, network or client). */
    statusServerMs: number;
    joinServerMs: number;
    serverSpeedup: number;
    statusPlan: string;
    statusHeapFetches: number | null;
  };
  flushInsert: {
    rows: number;
    presentShare: number;
    withStatusMs: number;
    bareMs: number;
    /** with status columns + INCLUDE index / without. */
    ratio: number;
  };
  evaluationTrigger: {
    evaluations: number;
    statementLevelMs: number;
    rowLevelMs: number;
    /** row-level / statement-level. */
    speedup: number;
  };
}

const SETUP_SQL = `
CREATE TABLE packages_bare (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL, version_code bigint NOT NULL, signature text NOT NULL, first_seen_at timestamptz NOT NULL,
  CONSTRAINT bare_name_valid CHECK (char_length(name) <= 255 AND name ~ '^[A-Za-z][A-Za-z0-9_]*(\\.[A-Za-z][A-Za-z0-9_]*)+$'),
  CONSTRAINT bare_version_code_valid CHECK (version_code BETWEEN 0 AND 9007199254740991),
  CONSTRAINT bare_signature_valid CHECK (signature ~ '^[0-9a-f]{64}$'));
INSERT INTO packages_bare (name, version_code, signature, first_seen_at)
  SELECT name, version_code, signature, first_seen_at FROM packages ORDER BY id;
CREATE UNIQUE INDEX packages_bare_key ON packages_bare (name, version_code, signature);

CREATE TABLE evaluations_rowtrig (LIKE evaluations INCLUDING DEFAULTS INCLUDING IDENTITY);
ALTER TABLE evaluations_rowtrig ADD FOREIGN KEY (package_id) REFERENCES packages (id);
CREATE FUNCTION evaluations_apply_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE packages p
     SET verdict = NEW.verdict, threat_index = NEW.threat_index, source = NEW.source, rev = p.rev + 1
   WHERE p.id = NEW.package_id AND (NEW.source = 'manual' OR p.source IS DISTINCT FROM 'manual');
  DELETE FROM analysis_queue WHERE package_id = NEW.package_id;
  RETURN NULL;
END $$;
CREATE TRIGGER evaluations_apply_row AFTER INSERT ON evaluations_rowtrig FOR EACH ROW EXECUTE FUNCTION evaluations_apply_row();
CREATE TABLE bench_schema_meta (version text NOT NULL);
`;

function keyOf(i: number): [string, number, string] {
  return [`com.s${i % 1000}.app${i}`, i % 50, createHash('sha256').update(`s${i}`).digest('hex')];
}

async function ensureSchemaDatabase(
  packages: number,
  evaluatedShare: number,
  log: (m: string) => void,
): Promise<void> {
  const digest = createHash('sha1');
  for (const m of listMigrations()) digest.update(m.name).update(m.sql);
  const version = `${digest.update(SETUP_SQL).digest('hex').slice(0, 12)}-${packages}-${evaluatedShare}`;
  const current = await withClient('postgres', async (c) => {
    const exists = (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [SCHEMA_DATABASE]))
      .rowCount;
    if (!exists) return null;
    return withClient(SCHEMA_DATABASE, async (s) => {
      try {
        return (
          (await s.query<{ version: string }>('SELECT version FROM bench_schema_meta')).rows[0]?.version ??
          null
        );
      } catch {
        return null;
      }
    });
  });
  if (current === version) return;
  log(
    `schema: building ${SCHEMA_DATABASE} with ${packages} packages (once per version; kept for later runs)`,
  );
  await withClient('postgres', async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${SCHEMA_DATABASE} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${SCHEMA_DATABASE}`);
  });
  await migrate(pgUrl(SCHEMA_DATABASE));
  await withClient(SCHEMA_DATABASE, async (c) => {
    await c.query('SET maintenance_work_mem = "256MB"');
    // Load without the covering index, then build it once: same end state, much faster.
    await c.query('DROP INDEX packages_key');
    const seenAt = new Date(Date.UTC(2026, 0, 1)).toISOString();
    function* rows(): Generator<string> {
      for (let i = 0; i < packages; i++) {
        const [n, v, s] = keyOf(i);
        yield `${n}\t${v}\t${s}\t${seenAt}\n`;
      }
    }
    await copyLines(c, 'COPY packages (name, version_code, signature, first_seen_at) FROM STDIN', rows());
    await c.query(`CREATE UNIQUE INDEX packages_key ON packages (name, version_code, signature)
      INCLUDE (id, first_seen_at, verdict, threat_index, source, rev)`);
    log('schema: packages loaded; adding evaluations, the bare table and the row-level trigger');
    // Evaluated packages: every 1/share-th, some with both a model and a later manual verdict.
    const step = Math.round(1 / evaluatedShare);
    await c.query(`INSERT INTO evaluations (package_id, source, verdict, threat_index, created_by)
      SELECT id, 'model', (ARRAY['safe','malicious','suspicious']::verdict[])[1 + id % 3], (id % 100) / 100.0, 'seed'
        FROM packages WHERE id % ${step} = 0`);
    await c.query(`INSERT INTO evaluations (package_id, source, verdict, threat_index, created_by)
      SELECT id, 'manual', 'safe', 0.01, 'seed' FROM packages WHERE id % ${step * 4} = 0`);
    await c.query('INSERT INTO analysis_queue (package_id) SELECT id FROM packages WHERE source IS NULL');
    await c.query(SETUP_SQL);
    await c.query('INSERT INTO bench_schema_meta VALUES ($1)', [version]);
    await c.query('VACUUM ANALYZE');
  });
}

function randomKeys(rng: Random, packages: number, n: number): [string[], number[], string[]] {
  const names: string[] = [];
  const versions: number[] = [];
  const sigs: string[] = [];
  for (let i = 0; i < n; i++) {
    const [a, b, c] = keyOf(rng.int(packages));
    names.push(a);
    versions.push(b);
    sigs.push(c);
  }
  return [names, versions, sigs];
}

const LOOKUP_STATUS = `SELECT p.id, p.name, p.version_code, p.signature, p.first_seen_at, p.verdict, p.threat_index, p.source, p.rev
  FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(name, version_code, signature)
  JOIN packages p ON p.name = k.name AND p.version_code = k.version_code AND p.signature = k.signature`;

// The alternative the status columns replaced: the key table plus the winning evaluation per package.
const LOOKUP_JOIN = `SELECT b.id, b.name, b.version_code, b.signature, b.first_seen_at, l.verdict, l.threat_index, l.source
  FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(name, version_code, signature)
  JOIN packages_bare b ON b.name = k.name AND b.version_code = k.version_code AND b.signature = k.signature
  LEFT JOIN LATERAL (
    SELECT e.verdict, e.threat_index, e.source FROM evaluations e
     WHERE e.package_id = b.id ORDER BY (e.source = 'manual') DESC, e.id DESC LIMIT 1) l ON true`;

async function timeQuery(c: Client, name: string, text: string, values: unknown[]): Promise<number> {
  const t = process.hrtime.bigint();
  await c.query({ name, text, values });
  return Number(process.hrtime.bigint() - t) / 1e6;
}

const median = (xs: number[]) => percentiles(xs, [50])[0] as number;

async function measureLookups(c: Client, packages: number, iterations: number) {
  const rng = new Random(99);
  const status: number[] = [];
  const join: number[] = [];
  for (let i = 0; i < iterations + 50; i++) {
    const keys = randomKeys(rng, packages, 100);
    // Alternate which goes first so neither always finds the pages the other just read.
    const a = i % 2 === 0;
    const s = a ? await timeQuery(c, 'status', LOOKUP_STATUS, keys) : 0;
    const j = await timeQuery(c, 'join', LOOKUP_JOIN, keys);
    const s2 = a ? s : await timeQuery(c, 'status', LOOKUP_STATUS, keys);
    if (i >= 50) {
      status.push(s2);
      join.push(j);
    }
  }
  const serverStatus: number[] = [];
  const serverJoin: number[] = [];
  const execution = async (text: string, keys: unknown[]) => {
    const { rows } = await c.query<{ 'QUERY PLAN': [{ 'Execution Time': number }] }>({
      text: `EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON, FORMAT JSON) ${text}`,
      values: keys,
    });
    return rows[0]?.['QUERY PLAN'][0]['Execution Time'] ?? Number.NaN;
  };
  for (let i = 0; i < Math.min(iterations, 300); i++) {
    const keys = randomKeys(rng, packages, 100);
    serverStatus.push(await execution(LOOKUP_STATUS, keys));
    serverJoin.push(await execution(LOOKUP_JOIN, keys));
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const plan = await c.query<{ 'QUERY PLAN': string }>({
    text: `EXPLAIN (ANALYZE, COSTS OFF, SUMMARY OFF) ${LOOKUP_STATUS}`,
    values: randomKeys(rng, packages, 100),
  });
  const lines = plan.rows.map((r) => r['QUERY PLAN']);
  const scan = lines.find((l) => /Scan/.test(l) && /packages/.test(l))?.trim() ?? lines.join(' | ');
  const fetches = lines.map((l) => /Heap Fetches: (\d+)/.exec(l)).find(Boolean);
  const statusMs = status.reduce((a, b) => a + b, 0) / status.length;
  const joinMs = join.reduce((a, b) => a + b, 0) / join.length;
  return {
    keys: 100,
    iterations,
    statusColumnsMs: statusMs,
    joinMs,
    speedup: joinMs / statusMs,
    statusServerMs: mean(serverStatus),
    joinServerMs: mean(serverJoin),
    serverSpeedup: mean(serverJoin) / mean(serverStatus),
    statusPlan: scan,
    statusHeapFetches: fetches ? Number(fetches[1]) : null,
  };
}

async function measureFlushInsert(c: Client, packages: number, rows: number, reps: number) {
  const rng = new Random(7);
  const run = async (table: 'packages' | 'packages_bare', rep: number) => {
    await c.query('BEGIN');
    await c.query(`CREATE TEMP TABLE IF NOT EXISTS flush_staging (
      name text, version_code bigint, signature text, first_seen_at timestamptz) ON COMMIT DELETE ROWS`);
    const seenAt = new Date().toISOString();
    const lines: string[] = [];
    for (let i = 0; i < rows; i++) {
      // Half already stored, half new (unique per rep, so each rep inserts fresh keys).
      const [n, v, s] =
        i % 2 === 0
          ? keyOf(rng.int(packages))
          : [`org.fresh${rep + 10}.p${i}`, 1, createHash('sha256').update(`f${rep}:${i}`).digest('hex')];
      lines.push(`${n}\t${v}\t${s}\t${seenAt}\n`);
    }
    await copyLines(c, 'COPY flush_staging FROM STDIN', lines);
    const t = process.hrtime.bigint();
    await c.query(`WITH ins AS (
        INSERT INTO ${table} (name, version_code, signature, first_seen_at)
        SELECT name, version_code, signature, first_seen_at FROM flush_staging ORDER BY name, version_code, signature
        ON CONFLICT (name, version_code, signature) DO NOTHING RETURNING id, name, version_code, signature
      ), queued AS (INSERT INTO analysis_queue (package_id) SELECT id + 100000000000 FROM ins ON CONFLICT DO NOTHING)
      SELECT name, version_code, signature FROM ins`);
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    // Rolled back so every rep starts from the same table.
    await c.query('ROLLBACK');
    return ms;
  };
  const withStatus: number[] = [];
  const bare: number[] = [];
  await run('packages', -1);
  await run('packages_bare', -2);
  for (let r = 0; r < reps; r++) {
    if (r % 2 === 0) {
      withStatus.push(await run('packages', r));
      bare.push(await run('packages_bare', r));
    } else {
      bare.push(await run('packages_bare', r));
      withStatus.push(await run('packages', r));
    }
  }
  return {
    rows,
    presentShare: 0.5,
    withStatusMs: median(withStatus),
    bareMs: median(bare),
    ratio: median(withStatus) / median(bare),
  };
}

async function measureTriggers(c: Client, packages: number, evaluations: number, reps: number) {
  const rng = new Random(3);
  const run = async (table: 'evaluations' | 'evaluations_rowtrig') => {
    const start = 1 + rng.int(packages - evaluations - 1);
    await c.query('BEGIN');
    const t = process.hrtime.bigint();
    await c.query(
      `INSERT INTO ${table} (package_id, source, verdict, threat_index, created_by)
      SELECT g, CASE WHEN g % 5 = 0 THEN 'manual' ELSE 'model' END::verdict_source, 'malicious', 0.9, 'bench'
        FROM generate_series($1::bigint, $1::bigint + $2 - 1) g`,
      [start, evaluations],
    );
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    await c.query('ROLLBACK');
    return ms;
  };
  const stmt: number[] = [];
  const row: number[] = [];
  await run('evaluations');
  await run('evaluations_rowtrig');
  for (let r = 0; r < reps; r++) {
    if (r % 2 === 0) {
      stmt.push(await run('evaluations'));
      row.push(await run('evaluations_rowtrig'));
    } else {
      row.push(await run('evaluations_rowtrig'));
      stmt.push(await run('evaluations'));
    }
  }
  return {
    evaluations,
    statementLevelMs: median(stmt),
    rowLevelMs: median(row),
    speedup: median(row) / median(stmt),
  };
}

export async function runSchemaBench(options: {
  packages: number;
  quick: boolean;
  log: (m: string) => void;
}): Promise<SchemaResult> {
  const evaluatedShare = 0.2;
  await ensureSchemaDatabase(options.packages, evaluatedShare, options.log);
  return withClient(SCHEMA_DATABASE, async (c) => {
    // Earlier runs' rolled-back inserts and updates cleared visibility-map bits; without
    // this VACUUM the "index-only" scan would fetch heap pages it normally would not.
    await c.query(
      'VACUUM (ANALYZE) packages, packages_bare, evaluations, evaluations_rowtrig, analysis_queue',
    );
    options.log('schema: lookups (status columns vs join)');
    const lookup = await measureLookups(c, options.packages, options.quick ? 200 : 1000);
    options.log('schema: flush insert with vs without status columns');
    const flushInsert = await measureFlushInsert(c, options.packages, 10_000, options.quick ? 3 : 7);
    options.log('schema: 10k evaluations, statement-level vs row-level trigger');
    const evaluationTrigger = await measureTriggers(c, options.packages, 10_000, options.quick ? 3 : 7);
    return { packages: options.packages, evaluatedShare, lookup, flushInsert, evaluationTrigger };
  });
}
