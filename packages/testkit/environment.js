// A node test environment that remembers whether any test in the file failed, so the
// per-file database helper can keep a failed file's database for reading and drop the rest.
const { TestEnvironment } = require('jest-environment-node');

class SafepkgEnvironment extends TestEnvironment {
  async handleTestEvent(event) {
    if ((event.name === 'test_done' && event.test.errors.length > 0) || event.name === 'hook_failure') {
      this.global.__SAFEPKG_TEST_FAILED__ = true;
    }
  }
}

module.exports = SafepkgEnvironment;
