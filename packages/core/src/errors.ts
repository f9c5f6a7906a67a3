/**
 * Named errors with stable `code`s. HTTP handlers map codes to statuses; logs and
 * metrics use the code, never the message, so messages may be improved freely.
 */
export interface ErrorDetail {
  path: string;
  message: string;
}

export class SafepkgError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A configuration variable is missing or invalid; the process must not start. */
export class ConfigError extends SafepkgError {
  readonly details: ErrorDetail[];
  constructor(details: ErrorDetail[]) {
    super(
      'invalid_config',
      `invalid configuration: ${details.map((d) => `${d.path}: ${d.message}`).join('; ')}`,
    );
    this.details = details;
  }
}

/** Input failed validation; every bad field is listed. */
export class ValidationError extends SafepkgError {
  readonly details: ErrorDetail[];
  constructor(details: ErrorDetail[], message = 'request is invalid') {
    super('invalid_request', message);
    this.details = details;
  }
}

/** A buffer partition is at its share of MAX_BUFFER_DEPTH; nothing of the call was written to it. */
export class BufferFullError extends SafepkgError {
  readonly partitions: number[];
  constructor(partitions: number[]) {
    super('buffer_full', `buffer partition(s) ${partitions.join(', ')} are full; retry later`);
    this.partitions = partitions;
  }
}

/** Neither Redis nor PostgreSQL can take the request. */
export class UnavailableError extends SafepkgError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('unavailable', message, options);
  }
}

/** The flusher's partition lease expired or was taken by another holder. */
export class LeaseLostError extends SafepkgError {
  readonly partition: number;
  constructor(partition: number) {
    super('lease_lost', `lease on partition ${partition} was lost`);
    this.partition = partition;
  }
}

/** A dependency (PostgreSQL or Redis) did not answer at start-up. */
export class DependencyUnreachableError extends SafepkgError {
  readonly dependency: 'postgres' | 'redis';
  constructor(dependency: 'postgres' | 'redis', message: string, options?: { cause?: unknown }) {
    super(`${dependency}_unreachable`, message, options);
    this.dependency = dependency;
  }
}

/**
 * A PostgreSQL error caused by the values sent, not by the server being unavailable:
 * SQLSTATE class 22 (data exception), 23 (integrity constraint violation) and 54000 (program
 * limit, e.g. an index row too large). Retrying the same values fails the same way, so a
 * caller must refuse them (400, dead letter) rather than ask for a retry.
 */
export function isPostgresDataError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23') || code === '54000');
}
