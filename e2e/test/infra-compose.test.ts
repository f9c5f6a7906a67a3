import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CONFIG_VARIABLES } from '@safepkg/core';

// `docker compose` is not installed here: the file is checked structurally, as parsed YAML.

const ROOT = join(__dirname, '..', '..');

interface DependsOn {
  condition: string;
}
interface Service {
  image?: string;
  build?: { context: string; dockerfile: string; args?: Record<string, string> };
  command?: string[] | string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, DependsOn>;
  healthcheck?: { test: string[] };
  container_name?: string;
  restart?: string;
  stop_grace_period?: string;
  deploy?: { replicas?: number };
  scale?: number;
}
interface Compose {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
}

const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as Compose;
const svc = (name: string) => compose.services[name] as Service;
const seconds = (d: string | undefined) => Number(/^(\d+)s$/.exec(d ?? '')?.[1] ?? NaN);

test('has postgres, pgbouncer, redis, a one-shot migrate, a scalable api and one flusher', () => {
  expect(Object.keys(compose.services).sort()).toEqual([
    'api',
    'flusher',
    'migrate',
    'pgbouncer',
    'postgres',
    'redis',
  ]);
});

test('every image is pinned to a version; the apps build from the shared Dockerfile with their APP', () => {
  for (const [name, s] of Object.entries(compose.services)) {
    expect([name, s.image]).toEqual([name, expect.stringMatching(/^[\w./-]+:[\w.-]+$/)]);
    expect(s.image).not.toMatch(/:latest$/);
  }
  expect(svc('postgres').image).toMatch(/^postgres:15\.\d+/);
  expect(svc('redis').image).toMatch(/^redis:7\.\d+\.\d+/);
  for (const [name, app] of [
    ['migrate', 'api'],
    ['api', 'api'],
    ['flusher', 'flusher'],
  ] as const) {
    expect(svc(name).build).toEqual({
      context: '.',
      dockerfile: 'infra/docker/Dockerfile',
      args: { APP: app },
    });
  }
});

test('postgres and redis keep their data in volumes and have healthchecks', () => {
  expect(svc('postgres').volumes).toContain('pgdata:/var/lib/postgresql/data');
  expect(svc('postgres').healthcheck?.test.join(' ')).toContain('pg_isready');
  expect(svc('redis').volumes).toContain('redisdata:/data');
  expect(svc('redis').healthcheck?.test).toEqual(['CMD', 'redis-cli', 'ping']);
  expect(Object.keys(compose.volumes).sort()).toEqual(['pgdata', 'redisdata']);
});

test('redis runs with AOF fsync every second and noeviction', () => {
  const cmd = svc('redis').command as string[];
  expect(cmd[0]).toBe('redis-server');
  const flag = (name: string) => cmd[cmd.indexOf(name) + 1];
  expect(flag('--appendonly')).toBe('yes');
  expect(flag('--appendfsync')).toBe('everysec');
  expect(flag('--maxmemory-policy')).toBe('noeviction');
  expect(flag('--maxmemory')).toMatch(/^\d+[kmg]b$/);
});

test('migrate runs once after postgres is healthy; the apps start after it completed and the stores are healthy', () => {
  const migrate = svc('migrate');
  expect(migrate.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
  expect(migrate.restart).toBe('no');
  expect(migrate.command).toEqual(['node', '/srv/packages/core/dist/bin/migrate.js']);
  for (const name of ['api', 'flusher']) {
    expect(svc(name).depends_on).toEqual({
      postgres: { condition: 'service_healthy' },
      redis: { condition: 'service_healthy' },
      migrate: { condition: 'service_completed_successfully' },
      pgbouncer: { condition: 'service_started' },
    });
    expect(svc(name).restart).toBe('unless-stopped');
  }
});

test('api scales (no container_name, no fixed host port) and one flusher', () => {
  const api = svc('api');
  expect(api.container_name).toBeUndefined();
  expect(api.deploy?.replicas).toBeUndefined();
  for (const p of api.ports ?? []) {
    const [host, container] = p.split(':').slice(-2);
    expect(container).toBe('8080');
    // A host port range leaves each scaled replica its own port.
    expect(host).toMatch(/^\d+-\d+$/);
  }
  const flusher = svc('flusher');
  expect(flusher.deploy?.replicas ?? 1).toBe(1);
  expect(flusher.scale ?? 1).toBe(1);
  expect(flusher.ports).toEqual(['127.0.0.1:8081:8081']);
});

test('stop grace periods outlast the apps own shutdown deadlines (api 10 s, flusher 20 s)', () => {
  expect(seconds(svc('api').stop_grace_period)).toBeGreaterThan(10);
  expect(seconds(svc('flusher').stop_grace_period)).toBeGreaterThan(20);
});

test('the apps get only real configuration variables, pointing at the compose services', () => {
  for (const name of ['migrate', 'api', 'flusher']) {
    const env = svc(name).environment ?? {};
    for (const key of Object.keys(env))
      expect([name, key, CONFIG_VARIABLES.includes(key as never)]).toEqual([name, key, true]);
    // The apps through pgbouncer, each under its own database name; migrations direct.
    expect(env.DATABASE_URL).toMatch(
      name === 'migrate'
        ? /^postgres:\/\/safepkg:.*@postgres:5432\/safepkg$/
        : new RegExp(`^postgres://safepkg:.*@pgbouncer:6432/safepkg_${name}$`),
    );
    expect(env.REDIS_URL).toBe('redis://redis:6379');
    // Quoted: compose wants strings, and a YAML number would be a different type.
    for (const v of Object.values(env)) expect(typeof v).toBe('string');
  }
  const pg = svc('postgres').environment ?? {};
  expect(pg.POSTGRES_DB).toBe('safepkg');
  expect(pg.POSTGRES_USER).toBe('safepkg');
});

/** pgbouncer.ini as sections of key = value (`;` comments dropped). */
function parseIni(text: string): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith(';')) continue;
    const head = /^\[(\w+)\]$/.exec(line);
    if (head) {
      section = head[1] as string;
      out[section] = {};
      continue;
    }
    const eq = line.indexOf('=');
    (out[section] as Record<string, string>)[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

test('pgbouncer pools in transaction mode, one database name per app with its server-side timeouts; the apps say they are behind it', () => {
  const ini = parseIni(readFileSync(join(ROOT, 'infra', 'pgbouncer', 'pgbouncer.ini'), 'utf8'));
  const bouncer = ini.pgbouncer as Record<string, string>;
  expect(bouncer.pool_mode).toBe('transaction');
  expect(bouncer.listen_port).toBe('6432');
  // Refusing unknown startup parameters is what proves the apps send none (pgbouncer.test.ts).
  expect(bouncer.ignore_startup_parameters).toBeUndefined();
  expect(bouncer.server_reset_query).toBe('');
  expect(svc('pgbouncer').volumes).toEqual(['./infra/pgbouncer:/etc/pgbouncer:ro']);
  expect(bouncer.auth_file).toBe('/etc/pgbouncer/auth/userlist.txt');
  expect(readFileSync(join(ROOT, 'infra', 'pgbouncer', 'auth', 'userlist.txt'), 'utf8')).toMatch(
    /^"safepkg" "/,
  );
  const dbs = ini.databases as Record<string, string>;
  expect(Object.keys(dbs).sort()).toEqual(['safepkg_api', 'safepkg_flusher']);
  const timeout = (alias: string) => /SET statement_timeout = (\d+)/.exec(dbs[alias] ?? '')?.[1];
  for (const alias of Object.keys(dbs)) {
    expect(dbs[alias]).toMatch(/^host=postgres port=5432 dbname=safepkg /);
    expect(dbs[alias]).toMatch(/SET idle_in_transaction_session_timeout = \d+/);
  }
  // The api's server-side timeout is the one its own (client-side) timeout expects.
  expect(timeout('safepkg_api')).toBe(svc('api').environment?.PG_STATEMENT_TIMEOUT_MS);
  expect(timeout('safepkg_flusher')).toBe('30000');
  for (const name of ['api', 'flusher']) expect(svc(name).environment?.PG_POOLER).toBe('transaction');
});
