import { catchUp, summariseLag, type LagSample } from '../src/replica-lag';

/** A sample sent at `sentAt`, answered 2 ms later. */
function sample(sentAt: number, over: Partial<LagSample> = {}): LagSample {
  return {
    sentAt,
    receivedAt: sentAt + 2,
    replayLsn: 1000,
    primaryLsn: 1000,
    bytesBehind: 0,
    lagMs: 0,
    lastReplayedCommitAt: null,
    ...over,
  };
}

describe('summariseLag', () => {
  const samples = [
    sample(0, { lastReplayedCommitAt: -500 }),
    sample(100, { bytesBehind: 4000, lagMs: 80, lastReplayedCommitAt: -500 }),
    sample(200, { bytesBehind: 9000, lagMs: null, lastReplayedCommitAt: 150 }),
    sample(300, { bytesBehind: 0, lagMs: 0, lastReplayedCommitAt: 290 }),
    sample(400, { bytesBehind: 1000, lagMs: 500, lastReplayedCommitAt: 290 }),
  ];

  it('takes only the samples sent in the window, and null lags out of the lag spread', () => {
    const w = summariseLag(samples, 100, 300);
    expect(w.samples).toBe(3);
    expect(w.meanIntervalMs).toBe(100);
    expect(w.bytesBehind).toEqual({ samples: 3, p50: 4000, p99: 9000, max: 9000 });
    expect(w.lagMs).toEqual({ samples: 2, p50: 0, p99: 80, max: 80 });
  });

  it('bounds the replay delay of each commit the first time a sample shows it', () => {
    // 150 first seen by the sample answered at 202, 290 by the one answered at 302; -500
    // was already replayed at the first sample (no bound) and again at 100 (not new).
    const w = summariseLag(samples, 0, 400);
    expect(w.replayDelayMs).toEqual({ samples: 2, p50: 12, p99: 52, max: 52 });
  });

  it('is empty, not wrong, without samples', () => {
    const w = summariseLag(samples, 1000, 2000);
    expect(w.samples).toBe(0);
    expect(w.bytesBehind.max).toBeNaN();
    expect(w.meanIntervalMs).toBeNaN();
  });
});

describe('catchUp', () => {
  it('is bounded by the last sample that did not show the commit and the first that did', () => {
    const samples = [
      sample(0, { lastReplayedCommitAt: 10 }),
      sample(100, { lastReplayedCommitAt: 10 }),
      sample(200, { lastReplayedCommitAt: 150 }),
    ];
    expect(catchUp(samples, 150)).toEqual({ lastCommitAt: 150, lowerMs: 0, upperMs: 52 });
    expect(catchUp(samples, 40)).toEqual({ lastCommitAt: 40, lowerMs: 60, upperMs: 162 });
  });

  it('is null when no sample shows the commit replayed', () => {
    expect(catchUp([sample(0, { lastReplayedCommitAt: 10 })], 20)).toBeNull();
  });
});
