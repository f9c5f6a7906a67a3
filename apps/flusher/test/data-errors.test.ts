import { isDataError } from '../src/data-errors';

test('only errors caused by the rows themselves are data errors (isolated to dead letters); the rest back off', () => {
  // 22xxx data exception, 23xxx integrity constraint, 54000 program limit (an index row too large).
  for (const code of ['22003', '22P02', '22021', '23514', '23502', '54000'])
    expect(isDataError({ code })).toBe(true);
  // Connection loss, shutdown, timeouts, lock/serialization failures, out of disk, client-side errors: retry later.
  for (const code of ['08006', '57P01', '57014', '40001', '40P01', '53100', 'ECONNREFUSED', 'ETIMEDOUT']) {
    expect(isDataError({ code })).toBe(false);
  }
  expect(isDataError(new Error('Connection terminated unexpectedly'))).toBe(false);
  expect(isDataError({ code: 22003 })).toBe(false);
  expect(isDataError(null)).toBe(false);
});
