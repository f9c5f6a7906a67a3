// ioredis' own slot calculator (cluster-key-slot 1.1.1, hoisted from ioredis) ships no
// types; the keys test uses it so that "one slot" means what ioredis will route by.
declare module 'cluster-key-slot' {
  function calculate(value: string | Buffer): number;
  namespace calculate {
    /** The common slot of all the keys, or -1 if they span slots. */
    function generateMulti(values: (string | Buffer)[]): number;
  }
  export = calculate;
}
