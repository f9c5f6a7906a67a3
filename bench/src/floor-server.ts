import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { decodeCached, KeySchema } from '@safepkg/core';
import { Redis } from 'ioredis';

/**
 * The floor the api's check path is compared with: the least a server can do for the same
 * request on the same stack. node:http, the body read and JSON.parse'd, one MGET of the cache
 * keys through ioredis, each hit decoded, and an answer of the api's shape (every field of a
 * result, `degraded`) serialised with JSON.stringify. No validation, no PostgreSQL, no buffer,
 * no framework, logging or metrics: what the api spends above this is its own cost.
 */
interface FloorRef {
  name: string;
  versionCode: number;
  signature: string;
}

export function floorServer(redis: Redis, keys: KeySchema) {
  const answer = async (req: IncomingMessage, res: ServerResponse, body: string) => {
    const { packages } = JSON.parse(body) as { packages: FloorRef[] };
    const values = await redis.mget(
      ...packages.map((p) => keys.cache(`${p.name}:${p.versionCode}:${p.signature}`)),
    );
    const results = packages.map((p, i) => {
      const raw = values[i];
      const s = raw ? decodeCached(raw) : null;
      return s
        ? {
            name: p.name,
            versionCode: p.versionCode,
            signature: p.signature,
            status: s.verdict ?? 'unknown',
            threatIndex: s.threatIndex,
            source: s.source,
            basis: s.verdict ? 'package' : null,
            known: true,
            pending: false,
            firstSeenAt: new Date(s.firstSeenAt).toISOString(),
          }
        : {
            name: p.name,
            versionCode: p.versionCode,
            signature: p.signature,
            status: 'unknown',
            threatIndex: null,
            source: null,
            basis: null,
            known: false,
            pending: true,
            firstSeenAt: null,
          };
    });
    const json = JSON.stringify({ results, degraded: false });
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(json),
    });
    res.end(json);
  };
  return createServer((req, res) => {
    if (req.url === '/healthz') {
      res.end('ok');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      answer(req, res, Buffer.concat(chunks).toString('utf8')).catch((err: unknown) => {
        res.statusCode = 500;
        res.end(String(err));
      });
    });
  });
}

if (require.main === module) {
  // node dist/floor-server.js, with PORT, REDIS_URL and KEY_PREFIX as the api takes them.
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const server = floorServer(redis, new KeySchema(process.env.KEY_PREFIX ?? 'safepkg'));
  server.listen(Number(process.env.PORT ?? 3100), '127.0.0.1');
  process.on('SIGTERM', () => {
    server.close();
    redis.disconnect();
  });
}
