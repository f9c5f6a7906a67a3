import type { PackageRef } from '@safepkg/core';

export interface CheckResponse {
  status: number;
  retryAfter: string | null;
  degraded: boolean | null;
  results: {
    name: string;
    versionCode: number;
    signature: string;
    known: boolean;
    pending: boolean;
    status: string;
  }[];
  errorCode: string | null;
}

/**
 * One POST /v1/packages/check that reports what came back instead of throwing on a non-200,
 * so fault tests can assert 503 codes and Retry-After. Throws only when no answer came at all
 * (connection refused or reset: the api process is gone).
 */
export async function postCheck(
  apiUrl: string,
  packages: readonly PackageRef[],
  signal?: AbortSignal,
): Promise<CheckResponse> {
  const res = await fetch(`${apiUrl}/v1/packages/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ packages }),
    signal,
  });
  const body = (await res.json()) as {
    results?: CheckResponse['results'];
    degraded?: boolean;
    error?: { code: string };
  };
  return {
    status: res.status,
    retryAfter: res.headers.get('retry-after'),
    degraded: body.degraded ?? null,
    results: body.results ?? [],
    errorCode: body.error?.code ?? null,
  };
}

/**
 * What a device does: send until a 200 answers, waiting between tries (Retry-After on a 503,
 * a short pause when the api is down or restarting). Gives up after `deadline` (epoch ms).
 */
export async function checkUntilAccepted(
  apiUrl: () => string,
  packages: readonly PackageRef[],
  deadline: number,
): Promise<{ response: CheckResponse; attempts: number }> {
  for (let attempts = 1; ; attempts++) {
    let wait = 100;
    try {
      const response = await postCheck(
        apiUrl(),
        packages,
        AbortSignal.timeout(Math.max(1000, Math.min(30_000, deadline - Date.now()))),
      );
      if (response.status === 200) return { response, attempts };
      if (response.retryAfter) wait = Math.min(1000, Number(response.retryAfter) * 1000);
    } catch {
      // No answer: the api was killed mid-request or is restarting. Retry; the check is idempotent.
    }
    if (Date.now() + wait > deadline) throw new Error(`no 200 for a check after ${attempts} attempts`);
    await new Promise((r) => setTimeout(r, wait));
  }
}
