/** A PostgreSQL error caused by the rows themselves, not by the server being unavailable. */
export function isDataError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  // 22: data exception, 23: integrity constraint violation, 54000: program limit (e.g. index row too large).
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23') || code === '54000');
}
