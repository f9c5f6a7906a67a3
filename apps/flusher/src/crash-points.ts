/**
 * Fault-test hook: `SAFEPKG_TEST_CRASH_AT=<point>[:<n>]` makes the process die by SIGKILL
 * (no cleanup, like `kill -9`) the n-th time (default 1st) it reaches that point of the
 * flush protocol. Points: lease-held, after-read, after-commit. Unset in production.
 */
export function crashPointFromEnv(env: NodeJS.ProcessEnv): ((point: string) => void) | undefined {
  const spec = env.SAFEPKG_TEST_CRASH_AT;
  if (!spec) return undefined;
  const [target, nth] = spec.split(':');
  let remaining = Number(nth ?? 1);
  return (point) => {
    if (point === target && --remaining <= 0) process.kill(process.pid, 'SIGKILL');
  };
}
