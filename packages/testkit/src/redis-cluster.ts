import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster } from 'ioredis';
import { freePort, waitFor } from './processes';
import { startRedisServer, type RedisServer } from './processes';

const run = promisify(execFile);

export interface RedisClusterHandle {
  nodes: { host: string; port: number }[];
  /** REDIS_CLUSTER_NODES value. */
  nodesEnv: string;
  servers: RedisServer[];
  stop(): Promise<void>;
}

/**
 * A local Redis Cluster of `masters` masters and no replicas: redis-server processes with
 * cluster mode on free ports, joined by `redis-cli --cluster create`, ready when every node
 * reports cluster_state:ok. stop() kills them and removes their directories.
 */
export async function startRedisCluster(masters = 3): Promise<RedisClusterHandle> {
  const servers: RedisServer[] = [];
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      servers.push(
        await startRedisServer({
          port,
          extraArgs: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            `nodes-${port}.conf`,
            '--cluster-node-timeout',
            '2000',
          ],
        }),
      );
    }
    const addresses = servers.map((s) => `127.0.0.1:${s.port}`);
    await run(
      'redis-cli',
      ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'],
      {
        timeout: 30000,
      },
    );
    await waitFor(
      async () => {
        for (const s of servers) {
          const { stdout } = await run('redis-cli', ['-p', String(s.port), 'cluster', 'info']);
          if (!stdout.includes('cluster_state:ok')) return false;
        }
        return true;
      },
      { what: 'cluster_state:ok on every node', timeoutMs: 20000, intervalMs: 100 },
    );
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    throw err;
  }
  const nodes = servers.map((s) => ({ host: '127.0.0.1', port: s.port }));
  return {
    nodes,
    nodesEnv: nodes.map((n) => `${n.host}:${n.port}`).join(','),
    servers,
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

/** An ioredis Cluster client on the handle, for assertions. */
export function clusterClient(handle: RedisClusterHandle): Cluster {
  return new Cluster(handle.nodes, { redisOptions: { maxRetriesPerRequest: 2 } });
}
