import {
  isPostgresDataError,
  pingRedis,
  SafepkgError,
  UnavailableError,
  ValidationError,
  type RedisClient,
} from '@safepkg/core';

/**
 * A fault of our own code (or of data it cannot read), not of the dependency: it stays a 500
 * so that it is seen and fixed, rather than hidden behind an endless 503/retry loop.
 */
function isProgrammingError(err: unknown): boolean {
  return (
    err instanceof TypeError ||
    err instanceof SyntaxError ||
    err instanceof RangeError ||
    err instanceof ReferenceError
  );
}

/**
 * A Redis or PostgreSQL call on a route that cannot answer without it: a failure of the
 * dependency becomes `unavailable` (503 + Retry-After), because the client can only wait and
 * retry; a 500 would tell it the request itself is broken.
 */
export async function needDependency<T>(what: string, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (err instanceof SafepkgError || isProgrammingError(err)) throw err;
    throw new UnavailableError(`${what}: a dependency is not answering; retry later`, { cause: err });
  }
}

/**
 * A PostgreSQL write whose values the server may refuse: a data error (SQLSTATE class 22/23,
 * 54000) fails the same way on every retry, so it is the request's fault (400), not an outage.
 */
export async function needPostgresWrite<T>(what: string, path: string, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (isPostgresDataError(err)) {
      const sqlstate = String((err as { code: string }).code);
      throw new ValidationError(
        [{ path, message: `PostgreSQL refused a value (SQLSTATE ${sqlstate})` }],
        `${what}: PostgreSQL refused the request's values`,
      );
    }
    return needDependency(what, Promise.reject(err));
  }
}

/**
 * A failure of an operation that goes through Redis by code we do not own (BullMQ): it is
 * `unavailable` only when Redis itself does not answer; any other failure is unexpected (500).
 */
export async function throughRedis<T>(what: string, redis: RedisClient, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof SafepkgError || isProgrammingError(err)) throw err;
    const reachable = await pingRedis(redis, 1000).then(
      () => true,
      () => false,
    );
    if (reachable) throw err;
    throw new UnavailableError(`${what}: Redis is not answering; retry later`, { cause: err });
  }
}
