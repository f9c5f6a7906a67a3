import { PackageStore, SignerStore } from '@safepkg/core';
import { useTestContext } from '@safepkg/testkit';

const ctx = useTestContext();
const sig = (c: string) => c.repeat(64);

async function signerRow(signature: string) {
  const { rows } = await ctx.db.pool.query<{
    verdict: string;
    source: string;
    threat_index: number;
    rev: string;
  }>('SELECT verdict, source, threat_index, rev FROM signers WHERE signature = $1', [signature]);
  return rows[0] ? { ...rows[0], rev: Number(rows[0].rev) } : undefined;
}

test('a later signer verdict of the same source replaces the earlier; manual outranks model; rev counts changes; history is kept', async () => {
  const store = new SignerStore(ctx.db.pool);
  const s = sig('a');
  expect(await signerRow(s)).toBeUndefined();

  await store.record(
    [{ signature: s, verdict: 'suspicious', source: 'model', threatIndex: 0.4 }],
    'model-v1',
  );
  expect(await signerRow(s)).toEqual({ verdict: 'suspicious', source: 'model', threat_index: 0.4, rev: 1 });

  await store.record([{ signature: s, verdict: 'malicious', source: 'model', threatIndex: 0.8 }], 'model-v2');
  expect(await signerRow(s)).toEqual({ verdict: 'malicious', source: 'model', threat_index: 0.8, rev: 2 });

  const manual = await store.record(
    [{ signature: s, verdict: 'safe', source: 'manual', threatIndex: 0 }],
    'alice',
  );
  expect(manual).toEqual([{ signature: s, verdict: 'safe', source: 'manual', threatIndex: 0, rev: 3 }]);

  // A model verdict after a manual one is history only: the manual verdict and its rev stay.
  await store.record([{ signature: s, verdict: 'malicious', source: 'model', threatIndex: 0.9 }], 'model-v3');
  expect(await signerRow(s)).toEqual({ verdict: 'safe', source: 'manual', threat_index: 0, rev: 3 });

  // A later manual verdict replaces the earlier manual one.
  await store.record([{ signature: s, verdict: 'malicious', source: 'manual', threatIndex: 1 }], 'bob');
  expect(await signerRow(s)).toEqual({ verdict: 'malicious', source: 'manual', threat_index: 1, rev: 4 });

  const history = await ctx.db.pool.query<{ verdict: string; source: string; created_by: string }>(
    'SELECT verdict, source, created_by FROM signer_evaluations WHERE signature = $1 ORDER BY id',
    [s],
  );
  expect(history.rows).toEqual([
    { verdict: 'suspicious', source: 'model', created_by: 'model-v1' },
    { verdict: 'malicious', source: 'model', created_by: 'model-v2' },
    { verdict: 'safe', source: 'manual', created_by: 'alice' },
    { verdict: 'malicious', source: 'model', created_by: 'model-v3' },
    { verdict: 'malicious', source: 'manual', created_by: 'bob' },
  ]);
});

test('within one batch manual wins over model and the later of one source wins; one trigger call, one rev step', async () => {
  const store = new SignerStore(ctx.db.pool);
  const [s1, s2] = [sig('b'), sig('c')];
  const out = await store.record(
    [
      { signature: s1, verdict: 'safe', source: 'manual', threatIndex: 0.1 },
      { signature: s1, verdict: 'malicious', source: 'model', threatIndex: 0.9 },
      { signature: s2, verdict: 'safe', source: 'model', threatIndex: 0.2 },
      { signature: s2, verdict: 'suspicious', source: 'model', threatIndex: 0.5 },
    ],
    'batch',
  );
  expect(out.sort((a, b) => a.signature.localeCompare(b.signature))).toEqual([
    { signature: s1, verdict: 'safe', source: 'manual', threatIndex: expect.closeTo(0.1, 5), rev: 1 },
    { signature: s2, verdict: 'suspicious', source: 'model', threatIndex: 0.5, rev: 1 },
  ]);
  const { rows } = await ctx.db.pool.query('SELECT 1 FROM signer_evaluations WHERE signature = ANY($1)', [
    [s1, s2],
  ]);
  expect(rows).toHaveLength(4);
});

test('a signer verdict leaves the packages it signs and their analysis queue alone', async () => {
  const ref = { name: 'com.signed.app', versionCode: 1, signature: sig('d') };
  await new PackageStore(ctx.db.pool).insertBatch([{ ref, firstSeenAt: new Date() }]);
  await new SignerStore(ctx.db.pool).record(
    [{ signature: ref.signature, verdict: 'malicious', source: 'manual', threatIndex: 1 }],
    'alice',
  );
  const pkg = await ctx.db.pool.query('SELECT verdict, rev FROM packages WHERE name = $1', [ref.name]);
  expect(pkg.rows).toEqual([{ verdict: null, rev: 0 }]);
  const queued = await ctx.db.pool.query(
    'SELECT 1 FROM analysis_queue q JOIN packages p ON p.id = q.package_id WHERE p.name = $1',
    [ref.name],
  );
  expect(queued.rowCount).toBe(1);
  const found = await new PackageStore(ctx.db.pool).lookupSigners([ref.signature, sig('e')]);
  expect([...found.keys()]).toEqual([ref.signature]);
});

test('a signature not in the text form of packages.signature is refused by PostgreSQL', async () => {
  const store = new SignerStore(ctx.db.pool);
  await expect(
    store.record([{ signature: 'A'.repeat(64), verdict: 'safe', source: 'model', threatIndex: 0 }], 'x'),
  ).rejects.toMatchObject({ code: '23514' });
  const stored = await ctx.db.pool.query('SELECT 1 FROM signer_evaluations WHERE created_by = $1', ['x']);
  expect(stored.rowCount).toBe(0);
});
