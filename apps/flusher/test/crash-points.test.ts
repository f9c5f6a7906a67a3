import { ConfigError } from '@safepkg/core';
import { crashPointFromEnv } from '../src/crash-points';

test('no crash hook unless SAFEPKG_TEST_CRASH_AT is set', () => {
  expect(crashPointFromEnv({})).toBeUndefined();
  expect(crashPointFromEnv({ SAFEPKG_TEST_CRASH_AT: '' })).toBeUndefined();
});

test('a misspelt point or count fails the start instead of silently testing nothing', () => {
  expect(() => crashPointFromEnv({ SAFEPKG_TEST_CRASH_AT: 'after-comit' })).toThrow(ConfigError);
  expect(() => crashPointFromEnv({ SAFEPKG_TEST_CRASH_AT: 'after-commit:0' })).toThrow(ConfigError);
  expect(() => crashPointFromEnv({ SAFEPKG_TEST_CRASH_AT: 'after-commit:x' })).toThrow(/mid-confirm/);
});

test('the hook kills the process only at its point, on the n-th time it is reached', () => {
  const kill = jest.spyOn(process, 'kill').mockImplementation(() => true);
  try {
    const hook = crashPointFromEnv({ SAFEPKG_TEST_CRASH_AT: 'mid-confirm:2' });
    void hook?.('after-commit');
    void hook?.('mid-confirm');
    expect(kill).not.toHaveBeenCalled();
    void hook?.('mid-confirm');
    expect(kill).toHaveBeenCalledWith(process.pid, 'SIGKILL');
  } finally {
    kill.mockRestore();
  }
});
