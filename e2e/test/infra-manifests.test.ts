import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { CONFIG_VARIABLES, configDefaults } from '@safepkg/core';
import { ApiMetrics } from '../../apps/api/src/metrics';
import { FlusherMetrics } from '../../apps/flusher/src/metrics';

// No cluster here: every manifest is parsed and checked for what the API server, the kubelet
// and the apps need; the dashboard and alerts are checked against the apps' real metric registries.

const ROOT = join(__dirname, '..', '..');
const K8S = join(ROOT, 'infra', 'k8s');

type Obj = Record<string, unknown>;
const o = (v: unknown) => (v ?? {}) as Obj;
const arr = (v: unknown) => (v ?? []) as Obj[];

interface Manifest {
  file: string;
  doc: Obj;
  kind: string;
  name: string;
}

const manifests: Manifest[] = readdirSync(K8S)
  .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
  .flatMap((file) =>
    parseAllDocuments(readFileSync(join(K8S, file), 'utf8')).map((d) => {
      expect(d.errors).toEqual([]);
      const doc = d.toJS() as Obj;
      return { file, doc, kind: String(doc.kind), name: String(o(doc.metadata).name) };
    }),
  );
const find = (kind: string, name: string) => {
  const m = manifests.find((x) => x.kind === kind && x.name === name);
  if (!m) throw new Error(`no ${kind}/${name} in infra/k8s`);
  return m.doc;
};
const podSpec = (workload: Obj) => o(o(o(workload.spec).template).spec);
const podLabels = (workload: Obj) => o(o(o(o(workload.spec).template).metadata).labels);
const containers = (workload: Obj) => arr(podSpec(workload).containers);
const matches = (selector: Obj, labels: Obj) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

const API_VERSIONS: Record<string, string> = {
  ConfigMap: 'v1',
  Secret: 'v1',
  Service: 'v1',
  Deployment: 'apps/v1',
  Job: 'batch/v1',
  HorizontalPodAutoscaler: 'autoscaling/v2',
  PodDisruptionBudget: 'policy/v1',
};

test('every manifest has a known kind with its current apiVersion and a name; kustomization lists them all', () => {
  expect(manifests.length).toBeGreaterThanOrEqual(9);
  for (const m of manifests) {
    expect([m.file, m.doc.apiVersion]).toEqual([m.file, API_VERSIONS[m.kind]]);
    expect(m.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  }
  const kinds = manifests.map((m) => m.kind);
  for (const k of [
    'Deployment',
    'Service',
    'HorizontalPodAutoscaler',
    'PodDisruptionBudget',
    'Job',
    'ConfigMap',
    'Secret',
  ]) {
    expect(kinds).toContain(k);
  }
  const kustomization = parse(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')) as {
    resources: string[];
  };
  expect([...kustomization.resources].sort()).toEqual([...new Set(manifests.map((m) => m.file))].sort());
});

const workloads = () => manifests.filter((m) => m.kind === 'Deployment' || m.kind === 'Job');

test('selectors match their pod template labels', () => {
  for (const m of manifests.filter((x) => x.kind === 'Deployment')) {
    expect([m.name, matches(o(o(o(m.doc.spec).selector).matchLabels), podLabels(m.doc))]).toEqual([
      m.name,
      true,
    ]);
  }
  const api = find('Deployment', 'safepkg-api');
  expect(matches(o(o(find('Service', 'safepkg-api').spec).selector), podLabels(api))).toBe(true);
  expect(
    matches(o(o(o(find('PodDisruptionBudget', 'safepkg-api').spec).selector).matchLabels), podLabels(api)),
  ).toBe(true);
  const flusher = find('Deployment', 'safepkg-flusher');
  expect(matches(o(o(find('Service', 'safepkg-flusher').spec).selector), podLabels(flusher))).toBe(true);
});

test('pods run non-root with a read-only root filesystem, no privilege escalation, resources set, pinned images', () => {
  for (const m of workloads()) {
    const spec = podSpec(m.doc);
    expect([m.name, o(spec.securityContext).runAsNonRoot, o(spec.securityContext).runAsUser]).toEqual([
      m.name,
      true,
      1000,
    ]);
    expect(spec.automountServiceAccountToken).toBe(false);
    for (const c of containers(m.doc)) {
      const sc = o(c.securityContext);
      expect([
        m.name,
        sc.allowPrivilegeEscalation,
        sc.readOnlyRootFilesystem,
        o(sc.capabilities).drop,
      ]).toEqual([m.name, false, true, ['ALL']]);
      for (const kind of ['requests', 'limits']) {
        expect(Object.keys(o(o(c.resources)[kind])).sort()).toEqual(['cpu', 'memory']);
      }
      expect(String(c.image)).toMatch(/^[\w./-]+:\d+\.\d+\.\d+$/);
    }
  }
});

test('probes hit /healthz (liveness) and /readyz (readiness) on a port the container declares, the one the app listens on', () => {
  const defaults = configDefaults();
  for (const [name, portVar, port] of [
    ['safepkg-api', 'PORT', defaults.port],
    ['safepkg-flusher', 'FLUSHER_PORT', defaults.flusherPort],
  ] as const) {
    const [c] = containers(find('Deployment', name));
    const ports = arr(c?.ports);
    const portOf = (ref: unknown) =>
      typeof ref === 'number' ? ref : ports.find((p) => p.name === ref)?.containerPort;
    expect(o(c?.livenessProbe).httpGet).toMatchObject({ path: '/healthz' });
    expect(o(c?.readinessProbe).httpGet).toMatchObject({ path: '/readyz' });
    for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
      const get = o(o(c?.[probe]).httpGet);
      if (probe === 'startupProbe' && !c?.[probe]) continue;
      expect([name, probe, portOf(get.port)]).toEqual([name, probe, port]);
    }
    // The app listens where the probes look: the port variable is set to it explicitly.
    expect(arr(c?.env).find((e) => e.name === portVar)?.value).toBe(String(port));
  }
  // The Service forwards to the api's named port.
  const svcPort = arr(o(find('Service', 'safepkg-api').spec).ports)[0];
  expect(arr(containers(find('Deployment', 'safepkg-api'))[0]?.ports).map((p) => p.name)).toContain(
    svcPort?.targetPort,
  );
});

test('one flusher (Recreate), an autoscaled api with a disruption budget, graceful termination windows', () => {
  const flusher = find('Deployment', 'safepkg-flusher');
  expect(o(flusher.spec).replicas).toBe(1);
  expect(o(o(flusher.spec).strategy).type).toBe('Recreate');
  // The flusher gives its batch 20 s after SIGTERM; the api drains for 10 s after a 5 s preStop.
  expect(podSpec(flusher).terminationGracePeriodSeconds).toBeGreaterThan(20);
  const api = find('Deployment', 'safepkg-api');
  expect(podSpec(api).terminationGracePeriodSeconds).toBeGreaterThan(15);
  expect(o(api.spec).replicas).toBeUndefined(); // the HPA owns it

  const hpa = o(find('HorizontalPodAutoscaler', 'safepkg-api').spec);
  expect(hpa.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'safepkg-api' });
  expect(Number(hpa.minReplicas)).toBeGreaterThanOrEqual(2);
  expect(Number(hpa.maxReplicas)).toBeGreaterThan(Number(hpa.minReplicas));
  const pdb = o(find('PodDisruptionBudget', 'safepkg-api').spec);
  expect(pdb.maxUnavailable ?? pdb.minAvailable).toBeDefined();

  const job = o(find('Job', 'safepkg-migrate').spec);
  expect(['Never', 'OnFailure']).toContain(o(o(job.template).spec).restartPolicy);
  expect(arr(o(o(job.template).spec).containers)[0]?.command).toEqual([
    'node',
    '/srv/packages/core/dist/bin/migrate.js',
  ]);
});

test('every environment name is a real configuration variable, and envFrom refers to manifests that exist', () => {
  const known = new Set<string>(CONFIG_VARIABLES);
  const names: string[] = [];
  // Every key of a ConfigMap or Secret loaded with envFrom becomes a variable (the pgbouncer
  // ones are mounted as files instead, and the pooler URLs are read key by key).
  for (const m of workloads()) {
    for (const c of containers(m.doc)) {
      names.push(...arr(c.env).map((e) => String(e.name)));
      for (const from of arr(c.envFrom)) {
        if (from.configMapRef)
          names.push(...Object.keys(o(find('ConfigMap', String(o(from.configMapRef).name)).data)));
        if (from.secretRef)
          names.push(...Object.keys(o(find('Secret', String(o(from.secretRef).name)).stringData)));
      }
      for (const e of arr(c.env)) {
        const ref = o(o(e.valueFrom).secretKeyRef);
        if (ref.name) expect(o(find('Secret', String(ref.name)).stringData)[String(ref.key)]).toBeDefined();
      }
    }
  }
  expect(names.length).toBeGreaterThan(10);
  expect(names.filter((n) => !known.has(n))).toEqual([]);
  // Secrets hold the secrets; the ConfigMap does not.
  const config = Object.keys(o(find('ConfigMap', 'safepkg-config').data));
  expect(config).not.toContain('DATABASE_URL');
  expect(config).not.toContain('ADMIN_TOKEN');
});

/** Every metric name both apps register (histograms add _bucket, _sum, _count series). */
async function registeredMetricNames(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const registry of [new ApiMetrics().registry, new FlusherMetrics().registry]) {
    for (const metric of await registry.getMetricsAsJSON()) {
      names.add(metric.name);
      if (String(metric.type) === 'histogram')
        for (const s of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${s}`);
    }
  }
  return names;
}

const METRIC = /\b((?:safepkg|process|nodejs)_[a-zA-Z0-9_]+)/g;

test('the Grafana dashboard uses only metrics the apps expose, and shows what an operator needs', async () => {
  const names = await registeredMetricNames();
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'infra', 'grafana', 'safepkg.json'), 'utf8')) as {
    uid: string;
    panels: { title: string; targets: { expr: string }[] }[];
  };
  const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
  const used = new Set(exprs.flatMap((e) => [...e.matchAll(METRIC)].map((m) => m[1] as string)));
  expect([...used].filter((n) => !names.has(n))).toEqual([]);
  for (const needed of [
    'safepkg_buffer_depth',
    'safepkg_buffer_oldest_pending_age_seconds',
    'safepkg_flush_rows_total',
    'safepkg_flush_new_rows_total',
    'safepkg_flush_batch_duration_seconds_bucket',
    'safepkg_buffer_dead_letters',
    'safepkg_cache_lookups_total',
    'safepkg_checked_packages_total',
    'safepkg_degraded_answers_total',
    'safepkg_http_request_duration_seconds_bucket',
    'safepkg_buffered_reports',
    'safepkg_buffered_reports_oldest_age_seconds',
  ]) {
    expect(used).toContain(needed);
  }
  expect(exprs.some((e) => /histogram_quantile\(0\.99, sum by \(le, route\)/.test(e))).toBe(true);
  const ids = dashboard.panels.map((p) => p.title);
  expect(new Set(ids).size).toBe(ids.length);
});

test('the Prometheus alerts use only metrics the apps expose and cover the failure modes', async () => {
  const names = await registeredMetricNames();
  const rules = parse(readFileSync(join(ROOT, 'infra', 'prometheus', 'alerts.yml'), 'utf8')) as {
    groups: {
      name: string;
      rules: { alert: string; expr: string; for?: string; labels: { severity: string } }[];
    }[];
  };
  const all = rules.groups.flatMap((g) => g.rules);
  for (const r of all) {
    expect(r.alert).toMatch(/^Safepkg[A-Za-z]+$/);
    expect(['info', 'warning', 'critical']).toContain(r.labels.severity);
    const used = [...r.expr.matchAll(METRIC)].map((m) => m[1] as string);
    expect([r.alert, used.length > 0]).toEqual([r.alert, true]);
    expect([r.alert, used.filter((n) => !names.has(n))]).toEqual([r.alert, []]);
    if (r.for) expect(r.for).toMatch(/^\d+[smh]$/);
  }
  const byMetric = (metric: string) => all.filter((r) => r.expr.includes(metric)).map((r) => r.alert);
  expect(byMetric('safepkg_buffer_oldest_pending_age_seconds').length).toBeGreaterThanOrEqual(1);
  expect(byMetric('deriv(sum(safepkg_buffer_depth)').length).toBeGreaterThanOrEqual(1);
  expect(byMetric('safepkg_flush_dead_letters_total').length).toBeGreaterThanOrEqual(1);
  expect(byMetric('safepkg_buffered_reports_oldest_age_seconds').length).toBeGreaterThanOrEqual(1);
  expect(byMetric('safepkg_flush_failures_total').length).toBeGreaterThanOrEqual(1);
  expect(byMetric('outcome="degraded"').length).toBeGreaterThanOrEqual(1);
  expect(byMetric('safepkg_flush_last_success_timestamp_seconds').length).toBeGreaterThanOrEqual(2); // stale and absent
  expect(new Set(all.map((r) => r.alert)).size).toBe(all.length);
});

test('pgbouncer: a Deployment and Service in front of PostgreSQL with the compose settings; the apps go through it, the migration direct', () => {
  const cm = String(o(find('ConfigMap', 'safepkg-pgbouncer').data)['pgbouncer.ini']);
  const compose = readFileSync(join(__dirname, '..', '..', 'infra', 'pgbouncer', 'pgbouncer.ini'), 'utf8');
  // The same settings; only the host differs (a Service here, a compose service there).
  const settings = (t: string) => t.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith(';'));
  expect(settings(cm.replace(/host=safepkg-postgres /g, 'host=postgres '))).toEqual(settings(compose));
  const bouncer = find('Deployment', 'safepkg-pgbouncer');
  const [c] = containers(bouncer);
  expect(c?.args).toEqual(['/etc/pgbouncer/pgbouncer.ini']);
  expect(arr(c?.ports)[0]).toEqual({ name: 'postgres', containerPort: 6432 });
  expect(arr(c?.volumeMounts).map((v) => v.mountPath)).toEqual(['/etc/pgbouncer', '/etc/pgbouncer/auth']);
  expect(arr(podSpec(bouncer).volumes)).toEqual([
    { name: 'config', configMap: { name: 'safepkg-pgbouncer' } },
    { name: 'auth', secret: { secretName: 'safepkg-pgbouncer' } },
  ]);
  expect(o(find('Secret', 'safepkg-pgbouncer').stringData)['userlist.txt']).toMatch(/^"safepkg" "/);
  const svcSpec = o(find('Service', 'safepkg-pgbouncer').spec);
  expect(matches(o(svcSpec.selector), podLabels(bouncer))).toBe(true);
  expect(arr(svcSpec.ports)[0]).toMatchObject({ port: 6432, targetPort: 'postgres' });

  const urls = o(find('Secret', 'safepkg-pooler-urls').stringData);
  for (const app of ['api', 'flusher']) {
    const env = arr(containers(find('Deployment', `safepkg-${app}`))[0]?.env);
    expect(env.find((e) => e.name === 'DATABASE_URL')?.valueFrom).toEqual({
      secretKeyRef: { name: 'safepkg-pooler-urls', key: app },
    });
    expect(String(urls[app])).toMatch(new RegExp(`@safepkg-pgbouncer:6432/safepkg_${app}$`));
    expect(cm).toContain(`safepkg_${app} = host=safepkg-postgres`);
  }
  expect(o(find('ConfigMap', 'safepkg-config').data).PG_POOLER).toBe('transaction');
  // The migration Job: safepkg-secrets' direct URL, nothing that points it at the pooler.
  const job = containers(find('Job', 'safepkg-migrate'))[0];
  expect(arr(job?.env).find((e) => e.name === 'DATABASE_URL')).toBeUndefined();
  expect(String(o(find('Secret', 'safepkg-secrets').stringData).DATABASE_URL)).toMatch(
    /@safepkg-postgres:5432\/safepkg$/,
  );
});
