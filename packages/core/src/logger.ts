import pino, { type Logger } from 'pino';
import type { Config } from './config';

export type { Logger };

/** JSON logs to stdout; credentials never reach them. */
export function createLogger(config: Pick<Config, 'logLevel'>, name: string): Logger {
  return pino({
    name,
    level: config.logLevel,
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', '*.adminToken', 'adminToken'],
      censor: '[redacted]',
    },
  });
}
