import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import {
  BufferFullError,
  SafepkgError,
  UnavailableError,
  ValidationError,
  type ErrorDetail,
} from '@safepkg/core';

/** An error the API answers with a status of its own; each subclass carries one stable code. */
export abstract class HttpError extends SafepkgError {
  abstract readonly status: number;
  readonly details: ErrorDetail[] = [];
}

export class NotFoundError extends HttpError {
  readonly status = 404;
  constructor(message: string) {
    super('not_found', message);
  }
}

export class UnauthorizedError extends HttpError {
  readonly status = 401;
  constructor(message: string) {
    super('unauthorized', message);
  }
}

export class RateLimitedError extends HttpError {
  readonly status = 429;
  constructor(message: string) {
    super('rate_limited', message);
  }
}

export class UnsupportedMediaTypeError extends HttpError {
  readonly status = 415;
  constructor(message: string) {
    super('unsupported_media_type', message);
  }
}

/** A request body in a Content-Encoding the API cannot inflate. */
export class UnsupportedEncodingError extends HttpError {
  readonly status = 415;
  constructor(message: string) {
    super('unsupported_encoding', message);
  }
}

export class PayloadTooLargeError extends HttpError {
  readonly status = 413;
  constructor(message: string) {
    super('payload_too_large', message);
  }
}

/** Anything unexpected: answered without internals (the cause is logged, never sent). */
export class InternalError extends HttpError {
  readonly status = 500;
  constructor() {
    super('internal', 'internal error');
  }
}

/** Writes the documented envelope `{ error: { code, message, details } }`. */
export function sendError(res: Response, err: HttpError | ValidationError): void {
  const status = err instanceof ValidationError ? 400 : err.status;
  res.status(status).json({ error: { code: err.code, message: err.message, details: err.details } });
}

/** Rejects a body that is not JSON before it is read (415); a request with no body passes. */
export const requireJson: RequestHandler = (req, _res, next) => {
  // req.is: null without a body, false with a body of another type.
  if (req.is('application/json') === false) {
    next(new UnsupportedMediaTypeError('Content-Type must be application/json'));
    return;
  }
  next();
};

interface BodyParserError {
  type?: string;
  status?: number;
  /** zlib's, on a compressed body that does not inflate: Z_BUF_ERROR (truncated), Z_DATA_ERROR… */
  code?: string;
}

/** The Content-Encodings body-parser inflates (zstd too on a Node.js with zstd support). */
export const REQUEST_ENCODINGS = 'gzip, deflate, br or identity';

/**
 * Every error becomes the documented envelope: known errors with their status, body
 * parser errors as 400/413/415, anything else a bare 500 with no internals.
 */
export function errorHandler(retryAfterS: number): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    if (err instanceof ValidationError || err instanceof HttpError) return sendError(res, err);
    if (err instanceof BufferFullError || err instanceof UnavailableError) {
      res.setHeader('Retry-After', String(retryAfterS));
      res.status(503).json({ error: { code: err.code, message: err.message, details: [] } });
      return;
    }
    const parser = err as BodyParserError;
    switch (parser.type) {
      case 'entity.too.large':
        return sendError(res, new PayloadTooLargeError('request body exceeds 1 MB'));
      case 'entity.parse.failed':
        return sendError(
          res,
          new ValidationError(
            [{ path: '(body)', message: 'malformed JSON' }],
            'request body is not valid JSON',
          ),
        );
      case 'encoding.unsupported':
        return sendError(res, new UnsupportedEncodingError(`Content-Encoding must be ${REQUEST_ENCODINGS}`));
      case 'charset.unsupported':
        return sendError(res, new UnsupportedMediaTypeError('body must be UTF-8 JSON'));
      case 'request.aborted':
      case 'request.size.invalid':
        return sendError(res, new ValidationError([], 'request body was incomplete'));
    }
    if (
      parser.status === 400 &&
      typeof parser.code === 'string' &&
      /^(Z_|ERR_BROTLI|ERR__)/.test(parser.code)
    ) {
      return sendError(
        res,
        new ValidationError(
          [
            {
              path: '(body)',
              message: 'not valid compressed data (truncated or corrupt)',
            },
          ],
          'request body could not be decompressed',
        ),
      );
    }
    if (typeof parser.status === 'number' && parser.status >= 400 && parser.status < 500) {
      return sendError(res, new ValidationError([], 'request could not be read'));
    }
    req.log?.error({ err }, 'unhandled error');
    sendError(res, new InternalError());
  };
}

export const notFound: RequestHandler = (req, res) => {
  sendError(res, new NotFoundError(`no route ${req.method} ${req.path}`));
};
