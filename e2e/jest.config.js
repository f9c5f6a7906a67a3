module.exports = { ...require('../jest.preset.js'), testTimeout: 180000 };
